"""Drive the Ansible playbooks: ansible-runner wrapper (runner) and the checks before a run (bootstrap)."""
