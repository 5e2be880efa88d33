import sys

from batchgate import server

sys.exit(server.main("lsf", sys.argv[1:]))
