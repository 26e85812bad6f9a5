"""``aiinfn up SITE`` as stages: drain -> infra -> inventory -> bootstrap -> kubeconfig -> overlay.

``runner`` orders, skips and resumes them and makes one line of a failure; ``site`` is what each stage
does; ``stack`` is the one seam to Pulumi's Automation API; ``kubeconfig`` fetches and rewrites the
cluster's kubeconfig; ``status`` compares the live site with its plan (``aiinfn status``).
"""
