from pkgc.cli import run

run()
