/*
 * Starting the daemon's threads (the watcher, the jobs, the checkpoint
 * writer, the control socket's writers), in one place.  Every one starts
 * with the loop's signals blocked, so that the kernel gives SIGTERM,
 * SIGINT and SIGHUP to the loop's thread alone, and main.c can hold them
 * off while it hands them over at shutdown.  A thread that did not block
 * them could take a SIGTERM meant for the loop, ending the daemon in the
 * middle of a card.
 */
#include <pthread.h>
#include <signal.h>

#include "cardlicd.h"

/* The signals that the loop's events take. */
void
thread_loop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* A thread, joinable or detached, with the loop's signals blocked. */
int
thread_start(pthread_t *t, int detached, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t set, old;
	int rc;

	thread_loop_signals(&set);
	pthread_attr_init(&attr);
	if (detached)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	rc = pthread_create(t, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}
