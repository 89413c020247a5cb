from benchmark.cli.main import main

if __name__ == "__main__":  # guarded: multiprocessing (spawn) imports this module in its children
    raise SystemExit(main())
