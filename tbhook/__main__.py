from tbhook.cli import app

app(prog_name="tbhook")
