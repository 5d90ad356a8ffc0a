from wspractice.cli import main

raise SystemExit(main())
