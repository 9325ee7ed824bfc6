"""TAP 1.1 service: metadata, execution, output formats, UWS jobs and the HTTP router."""
