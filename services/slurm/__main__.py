import sys

from batchgate import server

sys.exit(server.main("slurm", sys.argv[1:]))
