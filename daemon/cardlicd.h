/*
 * cardlicd: the one internal header.  Prototypes are grouped by the file
 * that defines them; everything else in a file is static.
 */
#ifndef CARDLICD_H
#define CARDLICD_H

#include <sys/types.h>

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "date.h"
#include "version.h"

#define CONF_DEFAULT_PATH	"/etc/cardlicd/cardlicd.conf"

#define FIELD_LEN	16	/* model, serial in CK_TOKEN_INFO */
#define LICENSE_LEN	128
#define STATUS_LEN	19
#define ATR_MAX		33
#define READER_MAX	128
#define PIN_MAX		64
#define LICENSE_ATTR	0x8000006AUL
#define LIC_RESPONSE_LEN 136	/* expiry + license */
#define LIC_RESPONSE_MAX 512

/* thread.c: a thread, with the loop's signals blocked in it */
void	thread_loop_signals(sigset_t *);
int	thread_start(pthread_t *, int, void *(*)(void *), void *);

/* fault.c: test builds only (-DCARDLICD_FAULTS); a no-op otherwise */
void	fault_point(const char *);

/* log.c */
enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
void	log_init(int, int);
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_alert(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatal_admin(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

struct card_report {
	const char	*reader;
	const char	*serial;	/* trimmed */
	const char	*model;		/* trimmed */
	const char	*outcome;
	const char	*reason;
	const char	*end_date;
	long		 us;		/* from the card seen to the outcome */
	const char	*chain_head;	/* hex */
};
void	log_card(const struct card_report *);
extern const char log_id_checkpoint[];
void	log_checkpoint(const char *);

/* control.c */
struct event_base;
int	control_open(struct event_base *, const char *,
	    void (*)(char *, size_t));
void	control_close(void);

/* conf.c */
enum start_policy {
	START_TODAY,		/* the day of issuance */
	START_FIXED,		/* start-date */
	START_TODAY_PLUS,	/* the day of issuance + start-offset-days */
	START_NEXT_MONTH,	/* the first day of the next month */
	START_LATER_OF		/* max(start-date, the day of issuance) */
};

enum card_kind { KIND_UNKNOWN, KIND_BATCH, KIND_TARGET, KIND_IGNORE };

enum pin_source { PIN_NONE, PIN_CONF, PIN_FILE, PIN_CREDENTIAL, PIN_KEYRING };

struct rule {
	enum card_kind	kind;
	int		by_atr;		/* else by reader name pattern */
	char		pattern[READER_MAX];
	uint8_t		atr[ATR_MAX];
	uint8_t		mask[ATR_MAX];
	size_t		atr_len;
};

#define CONF_MAX_RULES		32
#define CONF_MAX_FILTERS	16
#define CONF_MAX_MAPS		32

/* [readers] map: the PKCS#11 slot of a reader, by slot ID or description. */
struct reader_map {
	char		reader[READER_MAX];
	int		by_slot;
	unsigned long	slot;
	char		desc[65];
};

struct conf {
	char		path[4096];
	char		station[64];
	char		database[4096];
	char		timezone[64];
	char		module[4096];
	char		user[64];	/* drop to this user when root */
	char		control[108];	/* the status socket */
	enum pin_source	pin_source;
	char		pin_where[4096];	/* file, credential or key */
	char		*pin;		/* locked memory, PIN_MAX + 1 */
	size_t		pin_len;
	unsigned long	generation;	/* which load this is: 1, 2, ... */
	enum start_policy policy;
	long		start_date;	/* days; -1 when unset */
	long		start_offset;
	long		renew_days;
	char		include[CONF_MAX_FILTERS][READER_MAX];
	int		n_include;
	char		exclude[CONF_MAX_FILTERS][READER_MAX];
	int		n_exclude;
	struct rule	rules[CONF_MAX_RULES];
	int		n_rules;
	struct reader_map maps[CONF_MAX_MAPS];
	int		n_maps;
	int		refs;
	int		database_line, module_line, pin_line;	/* 0: default */
	int		station_line;
	/* [audit]: the station's signing key (issue 11), or none. */
	char		key_file[4096];
	char		key_credential[256];
	int		key_line;
	struct sign_key	*key;		/* NULL: none, or not read (reload) */
	char		key_endorsement[129];	/* hex, "" when none */
	long		checkpoint_interval;	/* s; 0: at shutdown only */
	char		checkpoint_file[4096];	/* "": the journal only */
	int		checkpoint_file_line;
};

#define CONF_CHECK_ONLY	0x1	/* -n: do not fetch credential or key */
#define CONF_NO_SIGN_KEY 0x2	/* reload: the key read at start stays */
struct conf	*conf_load(const char *, int, char *, size_t);
void		 conf_print(const struct conf *, FILE *);
struct conf	*conf_ref(struct conf *);
void		 conf_unref(struct conf *);
long		 conf_start_date(const struct conf *, long);
const char	*conf_policy_name(enum start_policy);
int		 conf_check_module(const struct conf *, FILE *, char *, size_t);
int		 conf_check_unit(const struct conf *);
const char	*conf_at(const struct conf *, int, char *, size_t);

/* classify.c */
int		 classify_parse_rule(const char *, const char *, struct rule *,
		    char *, size_t);
void		 classify_print_rule(FILE *, const struct rule *);
int		 classify_reader_wanted(const struct conf *, const char *);
enum card_kind	 classify_card(const struct conf *, const char *,
		    const uint8_t *, size_t);

/* checkpoint.c */
struct event_base;
void	checkpoint_load(const struct conf *, long *, uint8_t [32]);
void	checkpoint_init(const struct conf *, struct event_base *);
void	checkpoint_reload(const struct conf *);
void	checkpoint_finish(void);

/* db.c */
struct db_row {
	const char	*reader;
	long		 job;
	const char	*state;
	const char	*reason;
	const uint8_t	*model;		/* FIELD_LEN or NULL */
	const uint8_t	*serial;
	const char	*start_date;
	const char	*end_date;
	long		 license_seq;	/* 0: none */
	const uint8_t	*license;	/* LICENSE_LEN or NULL */
	const char	*batch_reader;
	const char	*batch_atr;
	long		 batch_count;	/* -1: none */
	const char	*sw;
	const char	*ckr;
	const uint8_t	*status;	/* STATUS_LEN or NULL */
	const char	*timings;
};

struct db_pending {
	long		license_seq;
	uint8_t		license[LICENSE_LEN];
	char		start_date[DATE_LEN + 1];
	char		end_date[DATE_LEN + 1];
};

int	db_open(const char *, const char *, char *, size_t);
int	db_station_of(const char *, char *, size_t);
void	db_close(void);
long	db_append(const struct db_row *, char *, size_t);
long	db_append_rows(const struct db_row *, int, char *, size_t);
long	db_append_if(const struct db_row *, int,
	    int (*)(void *, char *, size_t), void *, char *, size_t);
/* The note (DB.note): the row this daemon wrote last, after each commit. */
#define NOTE_LEN	512
#define NOTE_MAGIC	"cardlicd-note v1 "
long	db_tail(uint8_t [32]);
int	db_key_at(long, uint8_t [32], long *, int *);
int	db_row_hash(long, uint8_t [32]);
int	db_check_after(long, const uint8_t [32], const uint8_t *, char *,
	    size_t);
const char *db_refusing(void);
int	db_tail_ok(void);
/* What a follow-up row (in doubt, resolved) copies of the row it follows. */
struct db_card {
	long		job;
	char		reader[READER_MAX];
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	char		start[DATE_LEN + 1];
	char		batch_reader[READER_MAX];
	char		batch_atr[2 * ATR_MAX + 1];
};
/* One job of this station, as its rows tell it (db_job_in_tx). */
struct db_job {
	long		requested;	/* seq; 0: none */
	long		after;		/* a later row of the job; 0: none */
	long		generated;	/* seq; 0: none */
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	char		start[DATE_LEN + 1];
	uint8_t		license[LICENSE_LEN];
	int		has_license;
	int		keyed;		/* key: the station's at the request */
	uint8_t		key[32];
	long		key_seq;
};
int	db_find_pending(const uint8_t *, const uint8_t *, long, int,
	    struct db_pending *);
long	db_find_rejected(const uint8_t *, const uint8_t *);
long	db_batch_count(const char *, const char *);
long	db_find_doubt(const uint8_t *, const uint8_t *);
int	db_job_in_tx(long, struct db_job *);
int	db_next_unanswered(struct db_card *, long *, char *, size_t);
void	db_card_row(const struct db_card *, struct db_row *, const char *,
	    const char *);
long	db_resolve(long, int, const char *, char *, size_t);
long	db_count(const char *, const char *, const char *, long, const char *,
	    char *, size_t);
int	db_totals(long *, long *, long *, long *, long *);
long	db_next_job(void);
struct sign_key;
long	db_sign_start(struct sign_key *, const char *, char *, size_t);
const struct sign_key *db_signing_key(void);
void	db_station_now(char *, size_t);
void	db_chain_head(char [65]);
int	db_head_row(long *, uint8_t [32]);
long	db_batch_count_upto(const char *, const char *, long);

/* spill.c */
struct spill_license {
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	char		start[DATE_LEN + 1];
	char		end[DATE_LEN + 1];
	uint8_t		license[LICENSE_LEN];
	char		reader[READER_MAX];
	char		batch_reader[READER_MAX];
	char		batch_atr[2 * ATR_MAX + 1];
	char		sw[8];
};
/* A record that recovery found: the license, whose it says it is, and its check. */
struct spill_found {
	long			 job;
	const char		*station;
	struct spill_license	 l;
	const uint8_t		*signed_part;	/* what sig covers */
	size_t			 signed_len;
	uint8_t			 sig[64];
	int			 has_sig;
	const char		*path;
};
#define SPILL_RECORDED		0
#define SPILL_DONE_BEFORE	1
#define SPILL_RETRY		(-1)
#define SPILL_REFUSED		(-2)
struct sign_key;
void	spill_init(const char *, const char *, const struct sign_key *);
int	spill_reserve(char *, size_t);
int	spill_write(int, long, const struct spill_license *, char *, size_t);
int	spill_sync(int, long, char *, size_t);
void	spill_release(int, long);
int	spill_recover(int (*)(const struct spill_found *, char *, size_t));

/* recover.c */
int	recover_check_start(const char *, const uint8_t *, long,
	    const uint8_t [32], char *, size_t);
int	recover_run(char *, size_t);

/* pin.c */
int	pin_alloc(char **);
void	pin_free(char *);
struct stat;
int	pin_open_file(const char *, off_t, struct stat *, char *, size_t);
void	pin_identity(const struct conf *, char *, size_t);
int	pin_check_stat(const struct stat *, uid_t, gid_t, const char *, char *,
	    size_t);
int	pin_read_file(const char *, uid_t, gid_t, char *, size_t *, char *,
	    size_t);
int	pin_read_credential(const char *, char *, size_t *, char *, size_t);
int	pin_read_keyring(const char *, char *, size_t *, char *, size_t);

/* pkcs11.c */
struct token {
	unsigned long	slot;
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	unsigned long	flags;
};
/*
 * A first try of the PIN that a stop cut short (DB.pin-trying at
 * start-up): the card it was tried on, if the mark says.
 */
struct pin_doubt {
	int		on;
	int		known;		/* the mark names the card */
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	unsigned long	flags;		/* its token flags before the try */
};
int		 p11_load(const char *, char *, size_t);
void		 p11_unload(void);
void		 p11_readers_changed(void);
unsigned long	 p11_find_token(const struct conf *, const char *,
		    struct token *, char *, size_t);
unsigned long	 p11_token_now(unsigned long, struct token *);
unsigned long	 p11_open(unsigned long, unsigned long *);
void		 p11_close(unsigned long);
unsigned long	 p11_status(unsigned long, uint8_t [STATUS_LEN],
		    unsigned long *);
unsigned long	 p11_login(unsigned long, const char *, size_t);
unsigned long	 p11_logout(unsigned long);
unsigned long	 p11_load_license(unsigned long, const uint8_t *);
const char	*p11_rv_name(unsigned long);
int		 p11_pin_locked(unsigned long);
int		 p11_pin_final_try(unsigned long);
int		 p11_pin_tried_wrong(unsigned long);

/* batch.c */
enum batch_result {
	BATCH_OK,
	BATCH_NONE,		/* no batch card with credit; nothing spent */
	BATCH_REFUSED,		/* the card said no, nothing spent: see sw */
	BATCH_DOUBT,		/* a credit may be spent, no license came */
	BATCH_EXHAUSTED,	/* 6985 from one card (batch.c only) */
	BATCH_GONE		/* a card unusable before GENERATE (batch.c) */
};
struct batch_license {
	char		end_date[DATE_LEN + 1];
	uint8_t		license[LICENSE_LEN];
	int		has_license;	/* 136 bytes came, maybe a bad expiry */
	char		reader[READER_MAX];
	char		atr[2 * ATR_MAX + 1];
	unsigned	sw;
	char		message[512];
	long		wait_us;	/* for a batch card to be free */
};
void	batch_init(void);
int	batch_add(const char *, const uint8_t *, size_t, unsigned);
void	batch_classify_begin(void);
void	batch_classify_end(void);
void	batch_remove(const char *);
int	batch_probe(const char *);
int	batch_available(void);
int	batch_pick(char *, char *, int *);
void	batch_unpick(int);
void	batch_settle(const char *);
void	batch_wait_settled(const char *);
enum batch_result batch_generate(int, const uint8_t *, const uint8_t *,
	    const char *, struct batch_license *);
/* The exchange over any transmit function: PC/SC, or a fuzzer's. */
struct batch_io {
	long	(*tx)(void *, const uint8_t *, size_t, uint8_t *, size_t *,
		    unsigned *);
	void	*arg;
};
enum batch_result batch_exchange(const struct batch_io *, const uint8_t *,
	    const uint8_t *, const char *, struct batch_license *);
enum batch_result batch_parse(unsigned, const uint8_t *, size_t,
	    const char *, struct batch_license *);
void	batch_status(char *, size_t);
size_t	batch_list(char *, size_t);
int	batch_find(const char *, char *, char *, size_t);
/* A batch card in the pool: its reader, and its ATR in hex. */
#define BATCH_MAX	16
struct batch_id {
	char		reader[READER_MAX];
	char		atr[2 * ATR_MAX + 1];
};
int	batch_ids(struct batch_id [BATCH_MAX]);

/* watch.c */
enum watch_event { WATCH_INSERT, WATCH_REMOVE, WATCH_PCSC_UP,
	WATCH_PCSC_DOWN, WATCH_READER_GONE, WATCH_ALIVE };
struct watch_msg {
	enum watch_event	type;
	char			reader[READER_MAX];
	uint8_t			atr[ATR_MAX];
	size_t			atr_len;
	unsigned		card;		/* the insertion's number */
	long			seen_us;	/* date_mono_us() of the event */
};
int	watch_start(int, long);
void	watch_stop(void);
unsigned watch_card_now(const char *);

/* job.c */
/*
 * What became of a card: decided once, by the job, for the operator's line
 * and for the loop alike.
 */
enum outcome {
	OUTCOME_NONE,		/* no line: a batch card, or not over yet */
	OUTCOME_VERIFIED,
	OUTCOME_SKIPPED,	/* no license needed */
	OUTCOME_FAILED,
	OUTCOME_REJECTED,
	OUTCOME_PAUSED,
	OUTCOME_IN_DOUBT,	/* a credit may be spent, no license came */
	OUTCOME_UNKNOWN,	/* neither a batch card nor a token */
	OUTCOME_IGNORED		/* a [classify] rule */
};
/* The job's message to the loop: the outcome, and what the loop learns. */
struct job_result {
	char		reader[READER_MAX];
	unsigned	insertion;	/* the watcher's number of the card */
	enum card_kind	kind;
	enum outcome	outcome;
	int		credit_used;	/* a credit spent, or maybe spent */
	int		pin_refused;	/* wrong PIN: stop until conf changes */
	int		pin_settled;	/* a doubted first try: PIN accepted */
	int		no_credit;	/* no batch card with credit */
};
struct job_ctx {
	struct conf	*conf;
	char		reader[READER_MAX];
	uint8_t		atr[ATR_MAX];
	size_t		atr_len;
	unsigned	insertion;
	long		seen_us;	/* when the watcher saw the card */
	long		today;		/* days: the loop owns the time zone */
	int		paused_pin;
	struct pin_doubt pin_doubt;	/* paused_pin, maybe not refused */
	int		paused_credit;
	int		notify_fd;
};
int	job_start(struct job_ctx *);
long	job_now_ms(void);
void	job_wait_all(int);
int	job_running(void);

/* record.c: one card's rows, timings and operator line */
struct rec {
	const struct job_ctx	*c;
	struct job_result	*res;		/* what the loop learns */
	long			 id;		/* the job's number in rows */
	struct token		 tok;		/* the card, once known */
	int			 has_tok;
	char			 model[4 * FIELD_LEN + 1];	/* text */
	char			 serial[4 * FIELD_LEN + 1];
	int			 paused;	/* not done: issuance paused */
	const char		*end_date;
	long			 t0;		/* us: the card seen */
	long			 tstep;		/* us */
	char			 timings[400];
	size_t			 tlen;
	/* `loaded`: committed in one transaction with the row after it. */
	struct db_row		 deferred;
	int			 has_deferred;
	char			 deferred_timings[460];
};
const char	*outcome_name(enum outcome);
void	rec_init(struct rec *, const struct job_ctx *, struct job_result *);
void	rec_time(struct rec *, const char *);
void	rec_time_us(struct rec *, const char *, long);
void	rec_row(struct rec *, struct db_row *, const char *);
long	rec_record(struct rec *, const struct db_row *);
long	rec_record_forever(struct rec *, const struct db_row *);
void	rec_report(struct rec *, enum outcome, const char *);
void	rec_fail(struct rec *, const char *, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	rec_finish(struct rec *);

/* line.c: the loop's own state */
struct event_base;
void		 line_init(struct conf *, int);
const struct conf *line_current(void);
void		 line_reload(struct conf *);
void		 line_stop(void);
void		 line_status(void);
void		 line_apply_tz(const struct conf *);
void		 line_control_fill(char *, size_t);
void		 line_on_job(int, short, void *);
void		 line_on_watch(int, short, void *);
const char	*line_watchdog_why(void);
void		 line_watch_alive_now(void);
void		 line_finish(void);

/* pinturn.c */
enum pinturn { PINTURN_REFUSED, PINTURN_ALONE, PINTURN_FREE };
enum pinturn	pinturn_begin(unsigned long);
void		pinturn_end(unsigned long, enum pinturn, int, int);
void		pinturn_trying(const struct conf *, const struct token *);
int		pinturn_doubt_parse(const char *, struct pin_doubt *);
void		pinturn_tried(const struct conf *, int);
void		pinturn_clear(const struct conf *);
int		pinturn_mark_read(const struct conf *, const char *, char *,
		    size_t);

/* issue.c */
void	issue_card(struct rec *, int);

#endif
