"""Run reports people open in a browser (`sslsep report run RUN_DIR`): sslsep.reporting.run_report."""
