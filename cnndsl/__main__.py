from cnndsl.cli import app

app()
