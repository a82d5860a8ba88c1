import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["quality"]:
        from bench.quality.cli import main as quality

        sys.exit(quality(sys.argv[2:]))
    from bench.run import main

    sys.exit(main())
