"""The application's panels: clip browser, audio view, attack panel, log panel."""
