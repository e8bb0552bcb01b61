from entrypoint.cli import main

main(prog_name="autoinfer")
