import sys

from batchgate import server

sys.exit(server.main("gateway", sys.argv[1:]))
