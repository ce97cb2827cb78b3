from densevision.cli import main

raise SystemExit(main())
