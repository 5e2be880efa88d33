import sys

from batchgate import server

sys.exit(server.main("local", sys.argv[1:]))
