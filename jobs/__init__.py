"""spark-submit entry points: each module is ``main(argv)`` around pure ``transform_*`` functions."""
