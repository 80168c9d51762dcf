/* Helpers for suites that run cardlicd itself on the simulated line. */
#ifndef CARDLIC_TESTDAEMON_H
#define CARDLIC_TESTDAEMON_H

#include <sys/types.h>

#define CARDLICD	TOPDIR "/daemon/cardlicd"
#define MODULE		TOPDIR "/sim/cardlic-sim-p11.so"
#define CTL		TOPDIR "/ctl/cardlicctl"
#define FAULTD		TOPDIR "/daemon/cardlicd-faults"

extern pid_t	d_pid;
extern char	d_db[], d_conf[], d_log[];

void	d_config(const char *, const char *, const char *);
void	d_config_pin(const char *, const char *, const char *);
void	d_start(void);
void	d_spawn(char *const [], char *const [], int);
void	d_start_env(char *const [], int);
void	d_stop(void);
int	d_log_has(const char *);
void	d_wait_log(const char *, int);
char	*q(const char *);
long	qn(const char *);
void	wait_n(const char *, long, int);
char	*card_state(const char *, const char *);
void	feed(const char *, const char *, int, const char *);
void	d_kill_leftovers(void);
void	d_kill9(void);
void	d_start_fault(const char *);
void	d_wait_stopped(const char *);
void	wait_event(const char *, const char *, int);
long	card_num(const char *, const char *);
int	reconcile(char **);
void	d_suite_up(int);
void	d_suite_down(void);

#endif
