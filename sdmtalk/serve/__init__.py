"""`sdmtalk serve`: one local server with a web page (Gradio) and an HTTP API (FastAPI).

config.py  ServeConfig, every server default
jobs.py    JobManager: bounded queue, worker threads running TalkingFacePipeline (generate, dub), expiry
intake.py  uploads -> JobRequest through the pipeline's own checks and the server's limits
api.py     /api/jobs and /api/dub routes and one-line JSON errors
guard.py   token and request-size guards in front of everything
web.py     the Gradio page (gradio is imported only when a page is built)
app.py     create_app(config): all of it in one FastAPI app
command.py the CLI subcommand (`sdmtalk --help` works without the serve extra)
"""
