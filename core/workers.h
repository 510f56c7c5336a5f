/* workers.h — `moonwire --workers N`: a supervisor and N worker processes
 * on one port.
 *
 * The first process becomes the supervisor: it reserves the port, forks
 * the workers, relays what they send one another (wlink.h: adapter
 * messages, connections handed over) and restarts a worker that dies,
 * waiting longer each time one dies young. SIGTERM or SIGINT is passed on
 * to every worker, and the supervisor exits once all have stopped. Each
 * worker is an ordinary moonwire process that listens on the port with
 * SO_REUSEPORT, so the kernel spreads new connections over them. */
#ifndef MW_WORKERS_H
#define MW_WORKERS_H

#include "config.h"

/* Runs the supervisor for cfg->workers workers. Returns only in a worker:
 * its index (0..N-1), with *link_fd its end of the link (wlink_start) and
 * cfg->port the port reserved. The supervisor itself ends the process:
 * 0 after a clean stop, 1 when the workers could not start. */
int workers_supervise(mw_config *cfg, int *link_fd);

#endif
