/*
 * Logging.  In the foreground, lines go to stderr; under systemd (stderr is
 * the journal stream), they go to the journal with structured fields, so
 * that admins can filter on CARDLIC_OUTCOME, CARDLIC_SERIAL and so on.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "cardlicd.h"

static int	log_journal;
static int	log_verbose;

/* Is stderr the journal stream that systemd gave us? */
static int
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%lu:%lu", &dev, &ino) != 2)
		return 0;
	if (fstat(2, &st) != 0)
		return 0;
	return (unsigned long)st.st_dev == dev &&
	    (unsigned long)st.st_ino == ino;
}

void
log_init(int foreground, int verbose)
{
	log_journal = !foreground && log_stderr_is_journal();
	log_verbose = verbose;
}

static void
log_v(int prio, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_journal) {
		sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
		    "SYSLOG_IDENTIFIER=cardlicd", NULL);
		return;
	}
	fprintf(stderr, "cardlicd: %s%s\n", prio <= LOG_ALERT ? "ALERT: " :
	    prio <= LOG_ERR ? "error: " : prio == LOG_WARNING ? "warning: " :
	    "", msg);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_v(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

/* For what stops the line: an operator or admin must act. */
void
log_alert(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_ALERT, fmt, ap);
	va_end(ap);
}

/* Start-up only: the daemon never dies at run time. */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

/*
 * The operator's line for one card: reader, serial, outcome, expiry and
 * the time it took.  The journal entry carries the same as fields, plus
 * the audit chain's head so that a cut-off database can be detected.
 */
void
log_card(const struct card_report *r)
{
	char msg[768];
	int prio;

	snprintf(msg, sizeof(msg), "%s: %s %s: %s%s%s%s%s (%ld ms)", r->reader,
	    r->model != NULL && r->model[0] != '\0' ? r->model : "card",
	    r->serial != NULL && r->serial[0] != '\0' ? r->serial : "-",
	    r->outcome, r->end_date != NULL ? ", expires " : "",
	    r->end_date != NULL ? r->end_date : "",
	    r->reason != NULL && r->reason[0] != '\0' ? ": " : "",
	    r->reason != NULL ? r->reason : "", r->ms);
	prio = strcmp(r->outcome, "verified") == 0 ||
	    strcmp(r->outcome, "skipped") == 0 ? LOG_NOTICE : LOG_WARNING;
	if (!log_journal) {
		fprintf(stderr, "%s\n", msg);
		return;
	}
	sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
	    "SYSLOG_IDENTIFIER=cardlicd",
	    "CARDLIC_READER=%s", r->reader,
	    "CARDLIC_SERIAL=%s", r->serial != NULL ? r->serial : "",
	    "CARDLIC_MODEL=%s", r->model != NULL ? r->model : "",
	    "CARDLIC_OUTCOME=%s", r->outcome,
	    "CARDLIC_REASON=%s", r->reason != NULL ? r->reason : "",
	    "CARDLIC_END_DATE=%s", r->end_date != NULL ? r->end_date : "",
	    "CARDLIC_MS=%ld", r->ms,
	    "CARDLIC_CHAIN_HEAD=%s", r->chain_head != NULL ?
	    r->chain_head : "", NULL);
}
