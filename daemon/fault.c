/*
 * Fault points for the fault matrix (tests/check_faults.c).  Only a test
 * build (-DCARDLICD_FAULTS, make daemon/cardlicd-faults) acts on them; the
 * daemon that is installed compiles them to nothing.
 *
 * CARDLICD_FAULT="step:action[@N][,step:action[@N]...]": at the Nth time
 * the step is reached (default the first), `kill` sends SIGKILL to the
 * daemon, and `stop` says so on stderr and sends SIGSTOP, so that the test
 * can inject its fault (pull a card, fill the disk, lock the database)
 * before it sends SIGCONT or SIGKILL.  `pause` holds only the thread that
 * reached the step for 1.5 s, while the rest of the daemon (the loop, the
 * watcher) goes on: for the races between a job and the loop.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicd.h"

#ifdef CARDLICD_FAULTS
#define FAULT_MAX	16

static pthread_mutex_t	fault_lock = PTHREAD_MUTEX_INITIALIZER;
static int		fault_hits[FAULT_MAX];

void
fault_point(const char *step)
{
	const char *spec = getenv("CARDLICD_FAULT"), *p;
	char name[32], action[16];
	int i = 0, n, at, hit;

	if (spec == NULL)
		return;
	for (p = spec; *p != '\0' && i < FAULT_MAX; i++) {
		at = 1;
		n = 0;
		if (sscanf(p, "%31[^:]:%15[^@,]%n", name, action, &n) != 2)
			return;
		p += n;
		if (*p == '@') {
			at = atoi(p + 1);
			p += strcspn(p, ",");
		}
		if (*p == ',')
			p++;
		if (strcmp(name, step) != 0)
			continue;
		pthread_mutex_lock(&fault_lock);
		hit = ++fault_hits[i] == at;
		pthread_mutex_unlock(&fault_lock);
		if (!hit)
			continue;
		fprintf(stderr, "cardlicd: fault point %s reached\n", step);
		fflush(stderr);
		if (strcmp(action, "kill") == 0)
			raise(SIGKILL);
		else if (strcmp(action, "stop") == 0)
			raise(SIGSTOP);
		else if (strcmp(action, "pause") == 0)
			usleep(1500000);
	}
}
#else
void
fault_point(const char *step)
{
	(void)step;
}
#endif
