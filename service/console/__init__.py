"""The web console for compliance officers (server-rendered pages under ``/console/``)."""
