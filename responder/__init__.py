"""responder: incident-response playbooks for compromised containers, run through Ansible."""

__version__ = "0.1.0"
