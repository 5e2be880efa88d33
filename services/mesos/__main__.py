import sys

from batchgate import server

sys.exit(server.main("mesos", sys.argv[1:]))
