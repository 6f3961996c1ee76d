"""Monitoring of captured online traffic (docs/monitoring.md): a run reads the captured requests and
answers of a window (`window`), judges each version's rows against its baseline (`judge`), writes
Model Monitor's files and a summary under `monitoring/<model>/<run>/` (`runs`), and acts on what it
found: metrics, a notice, a retraining request through the drift trigger's cooldown (`actions`)."""
