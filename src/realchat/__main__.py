import sys

from realchat.cli import main

sys.exit(main())
