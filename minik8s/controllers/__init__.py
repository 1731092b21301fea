"""Controllers run by the controller-manager: each is an informer + work queue + idempotent sync."""
