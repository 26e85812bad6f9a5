"""Cross-facility federated learning (``aiinfn fl``): one training over platform sites and HPC facilities.

The researcher's description (model.py, description.py) names the facilities, each with its data where
it already is; aiinfn checks it against the platform (sites, queues, registry) and the facilities (over
SSH), generates the workflow and one deployment per facility for the StreamFlow workflow engine
(workflow.py), hands over and watches (run.py, engine.py), and reports per round (report.py). The
programs that run inside the workflow, task.py (one round at a facility) and aggregate.py (federated
averaging on the controller), are shipped as files and import nothing of aiinfn. Nothing of the workflow
engine is re-implemented here.
"""
