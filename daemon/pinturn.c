/*
 * Whose turn it is to try the configured PIN (invariant 4).  Until a
 * configuration's PIN has been accepted once, logins take turns: two
 * cards inserted together must not both meet a wrong PIN.  Once it was
 * accepted, logins run side by side; once refused, no card is tried with
 * it again.  The state is kept by the configuration's generation (not in
 * the configuration, which stays as it was loaded), for the last few
 * configurations whose jobs may still be running after a reload.
 */
#include <pthread.h>

#include "cardlicd.h"

#define PINTURN_GENS	16

static pthread_mutex_t	pinturn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned long	gen;
	int		state;		/* 0 untried, 1 accepted, -1 refused */
} pinturn_gens[PINTURN_GENS];

/* Under pinturn_lock.  A configuration 16 reloads later reuses a slot. */
static int *
pinturn_state(unsigned long gen)
{
	int i = (int)(gen % PINTURN_GENS);

	if (pinturn_gens[i].gen != gen) {
		pinturn_gens[i].gen = gen;
		pinturn_gens[i].state = 0;
	}
	return &pinturn_gens[i].state;
}

/*
 * Before a login.  PINTURN_REFUSED: do not try.  PINTURN_ALONE: the
 * caller holds the turn (no other login of this PIN until pinturn_end).
 * PINTURN_FREE: the PIN is known good, go.
 */
enum pinturn
pinturn_begin(unsigned long gen)
{
	int state;

	pthread_mutex_lock(&pinturn_lock);
	state = *pinturn_state(gen);
	if (state < 0) {
		pthread_mutex_unlock(&pinturn_lock);
		return PINTURN_REFUSED;
	}
	if (state == 0)
		return PINTURN_ALONE;	/* the lock is the turn */
	pthread_mutex_unlock(&pinturn_lock);
	return PINTURN_FREE;
}

/* After the login: what it taught about the PIN, and the turn's end. */
void
pinturn_end(unsigned long gen, enum pinturn how, int accepted, int refused)
{
	int *state;

	if (how == PINTURN_REFUSED)
		return;
	if (how == PINTURN_FREE) {
		if (!refused)
			return;
		pthread_mutex_lock(&pinturn_lock);
	}
	state = pinturn_state(gen);
	if (refused)
		*state = -1;
	else if (accepted && *state == 0)
		*state = 1;
	pthread_mutex_unlock(&pinturn_lock);
}
