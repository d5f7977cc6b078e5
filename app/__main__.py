from kbqa.cli import main

raise SystemExit(main())
