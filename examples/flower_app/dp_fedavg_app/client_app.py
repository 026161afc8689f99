"""The ClientApp: runs on each SuperNode, trains on the node's own data file (node config
``data-path``) and sends back its locally trained model, which the server clips and noises."""

from __future__ import annotations

from deniable.distributed.flower_apps import dp_fedavg_client_app

from .task import local_client, local_model

app = dp_fedavg_client_app(local_model, local_client)
