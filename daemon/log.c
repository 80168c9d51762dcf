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
 * A start-up refusal that only the admin can settle (the database is not
 * as the station left it): exit status 2, which the unit does not
 * restart (RestartPreventExitStatus=2), as for a mistake in the file.
 */
void
fatal_admin(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(2);
}

/*
 * One MESSAGE_ID per outcome, fixed for ever (journalctl --new-id128), so
 * that monitoring can match on them and "journalctl -x" shows what the
 * catalog (systemd/cardlicd.catalog) says about each.  A new outcome
 * gets a new id here and an entry there.
 */
static const struct {
	const char	*outcome;
	const char	*id;
} log_ids[] = {
	{ "verified",	"0e92887bb62d43378c6b0534190811b5" },
	{ "skipped",	"6c177bf29abe46b4ae36667977faf86b" },
	{ "FAILED",	"ab380919b92c4ebdadb39bdfc492d100" },
	{ "REJECTED",	"579ad33c89704b359c971cbc084d9297" },
	{ "PAUSED",	"fabfa88ea7ea462897ae734bf374cea4" },
	{ "IN-DOUBT",	"440f5fb49a0144fcb587b5a3542b27f0" },
};

/* A signed checkpoint of the audit chain (daemon/checkpoint.c). */
const char log_id_checkpoint[] = "c08c406bc46841f4824041f32851faaa";

/* An outcome that this table does not know yet has an id too. */
#define LOG_ID_OTHER	"030a2692bfce473caa6ec40578a371cf"

static const char *
log_message_id(const char *outcome)
{
	size_t i;

	for (i = 0; i < sizeof(log_ids) / sizeof(log_ids[0]); i++)
		if (strcmp(log_ids[i].outcome, outcome) == 0)
			return log_ids[i].id;
	return LOG_ID_OTHER;
}

/*
 * The operator's line for one card: reader, serial, outcome, expiry and
 * the time it took.  The journal entry carries the same as fields, plus
 * the audit chain's head so that a cut-off database can be detected, and
 * the outcome's MESSAGE_ID.
 */
void
log_card(const struct card_report *r)
{
	char msg[768];
	int prio;

	snprintf(msg, sizeof(msg), "%s: %s %s: %s%s%s%s%s (%ld.%ld ms)",
	    r->reader,
	    r->model != NULL && r->model[0] != '\0' ? r->model : "card",
	    r->serial != NULL && r->serial[0] != '\0' ? r->serial : "-",
	    r->outcome, r->end_date != NULL ? ", expires " : "",
	    r->end_date != NULL ? r->end_date : "",
	    r->reason != NULL && r->reason[0] != '\0' ? ": " : "",
	    r->reason != NULL ? r->reason : "", r->us / 1000,
	    r->us % 1000 / 100);
	prio = strcmp(r->outcome, "verified") == 0 ||
	    strcmp(r->outcome, "skipped") == 0 ? LOG_NOTICE : LOG_WARNING;
	if (!log_journal) {
		fprintf(stderr, "%s\n", msg);
		return;
	}
	sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
	    "SYSLOG_IDENTIFIER=cardlicd",
	    "MESSAGE_ID=%s", log_message_id(r->outcome),
	    "CARDLIC_READER=%s", r->reader,
	    "CARDLIC_SERIAL=%s", r->serial != NULL ? r->serial : "",
	    "CARDLIC_MODEL=%s", r->model != NULL ? r->model : "",
	    "CARDLIC_OUTCOME=%s", r->outcome,
	    "CARDLIC_REASON=%s", r->reason != NULL ? r->reason : "",
	    "CARDLIC_END_DATE=%s", r->end_date != NULL ? r->end_date : "",
	    "CARDLIC_MS=%ld", r->us / 1000,
	    "CARDLIC_USEC=%ld", r->us,
	    "CARDLIC_CHAIN_HEAD=%s", r->chain_head != NULL ?
	    r->chain_head : "", NULL);
}

/*
 * A signed checkpoint: the line itself in CARDLICD_CHECKPOINT, so that
 * cardlicctl verify --checkpoints journal reads it back byte for byte.
 */
void
log_checkpoint(const char *line)
{
	if (!log_journal) {
		fprintf(stderr, "cardlicd: checkpoint: %s\n", line);
		return;
	}
	sd_journal_send("MESSAGE=checkpoint: %s", line, "PRIORITY=%d",
	    LOG_INFO, "SYSLOG_IDENTIFIER=cardlicd",
	    "MESSAGE_ID=%s", log_id_checkpoint,
	    "CARDLICD_CHECKPOINT=%s", line, NULL);
}
