/* Helpers for suites that run on the simulated line (sim/line). */
#ifndef CARDLIC_TESTLINE_H
#define CARDLIC_TESTLINE_H

#include <stddef.h>
#include <stdint.h>

extern char	tl_dir[];

void	tl_up(int);
void	tl_up_opts(int, const char *);
void	tl_line_ensure(void);
void	tl_down(void);
void	tl_sh(const char *, ...) __attribute__((format(printf, 1, 2)));
int	tl_sh_rc(const char *, ...) __attribute__((format(printf, 1, 2)));
void	tl_insert(int, const char *, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	tl_remove(int);
char	*tl_read(const char *, ...) __attribute__((format(printf, 1, 2)));
size_t	tl_hex(const char *, uint8_t *, size_t);
char	*tl_reader(int);
long	tl_now_ms(void);
char	*tl_reconcile(const char *);

#endif
