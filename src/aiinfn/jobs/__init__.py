"""Programs the overlay runs inside the cluster as Kubernetes Jobs (standard library only)."""
