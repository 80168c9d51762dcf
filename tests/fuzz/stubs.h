/*
 * The daemon's logging and fault points for a harness that includes a
 * daemon file: the harness checks results itself, so log lines go
 * nowhere, and a fatalx is a crash the fuzzer must report.
 */
#ifndef FUZZ_STUBS_H
#define FUZZ_STUBS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void	fault_point(const char *);
void	log_warnx(const char *, ...);
void	log_info(const char *, ...);
void	log_debug(const char *, ...);
void	log_alert(const char *, ...);
void	fatalx(const char *, ...) __attribute__((noreturn));

void
fault_point(const char *step)
{
	(void)step;
}

void
log_warnx(const char *fmt, ...)
{
	(void)fmt;
}

void
log_info(const char *fmt, ...)
{
	(void)fmt;
}

void
log_debug(const char *fmt, ...)
{
	(void)fmt;
}

void
log_alert(const char *fmt, ...)
{
	(void)fmt;
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	abort();
}

/* An invariant broken: say which, and crash so that libFuzzer keeps it. */
#define FUZZ_CHECK(cond, ...) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: invariant \"%s\" broken: ",	\
		    __FILE__, __LINE__, #cond);				\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		abort();						\
	}								\
} while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#endif
