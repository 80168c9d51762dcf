/*
 * Which readers are watched, and what a card is before anyone talks to
 * it: the [readers] filters and the [classify] rules, by reader name
 * (shell patterns) or by ATR with an optional mask.  A card that no rule
 * names is probed (job.c): the batch application's SELECT, then the
 * middleware's token.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "cardlicd.h"
#include "dbhash.h"

static const char *const classify_kinds[] = { "?", "batch", "target",
    "ignore" };

static int
classify_hex(const char *s, size_t len, uint8_t *out, size_t *n)
{
	size_t i;
	unsigned v;

	if (len % 2 != 0 || len / 2 > ATR_MAX || len == 0)
		return -1;
	for (i = 0; i < len; i += 2) {
		if (!isxdigit((unsigned char)s[i]) ||
		    !isxdigit((unsigned char)s[i + 1]) ||
		    sscanf(s + i, "%2x", &v) != 1)
			return -1;
		out[i / 2] = (uint8_t)v;
	}
	*n = len / 2;
	return 0;
}

/*
 * KIND-reader = PATTERN, or KIND-atr = HEX[/MASK], KIND one of batch,
 * target, ignore.  0, or -1 with err naming the key and what is wrong.
 */
int
classify_parse_rule(const char *key, const char *v, struct rule *r,
    char *err, size_t len)
{
	const char *slash;
	size_t alen, mlen, i;

	memset(r, 0, sizeof(*r));
	r->kind = strncmp(key, "batch", 5) == 0 ? KIND_BATCH :
	    strncmp(key, "target", 6) == 0 ? KIND_TARGET : KIND_IGNORE;
	r->by_atr = strstr(key, "-atr") != NULL;
	if (!r->by_atr) {
		if (strlen(v) >= sizeof(r->pattern)) {
			snprintf(err, len, "%s: longer than %zu bytes", key,
			    sizeof(r->pattern) - 1);
			return -1;
		}
		snprintf(r->pattern, sizeof(r->pattern), "%s", v);
		return 0;
	}
	slash = strchr(v, '/');
	alen = slash != NULL ? (size_t)(slash - v) : strlen(v);
	if (classify_hex(v, alen, r->atr, &r->atr_len) != 0) {
		snprintf(err, len, "%s: \"%s\" is not an ATR in hex (2 to %d "
		    "digits, optionally /MASK)", key, v, 2 * ATR_MAX);
		return -1;
	}
	if (slash != NULL) {
		if (classify_hex(slash + 1, strlen(slash + 1), r->mask,
		    &mlen) != 0 || mlen != r->atr_len) {
			snprintf(err, len, "%s: the mask must be hex of the "
			    "same length as the ATR", key);
			return -1;
		}
	} else
		memset(r->mask, 0xFF, r->atr_len);
	for (i = 0; i < r->atr_len; i++)
		r->atr[i] &= r->mask[i];
	return 0;
}

/* For cardlicd -n: the rule as it was understood. */
void
classify_print_rule(FILE *f, const struct rule *r)
{
	char atr[2 * ATR_MAX + 1], mask[2 * ATR_MAX + 1];

	fprintf(f, "%s-%s = ", classify_kinds[r->kind], r->by_atr ? "atr" :
	    "reader");
	if (!r->by_atr) {
		fprintf(f, "%s\n", r->pattern);
		return;
	}
	dbhash_hex(r->atr, r->atr_len, 1, atr);
	dbhash_hex(r->mask, r->atr_len, 1, mask);
	fprintf(f, "%s/%s\n", atr, mask);
}

int
classify_reader_wanted(const struct conf *c, const char *reader)
{
	int i, in = c->n_include == 0;

	for (i = 0; i < c->n_include && !in; i++)
		in = fnmatch(c->include[i], reader, 0) == 0;
	for (i = 0; i < c->n_exclude && in; i++)
		in = fnmatch(c->exclude[i], reader, 0) != 0;
	return in;
}

/* The first rule that matches; KIND_UNKNOWN means "probe the card". */
enum card_kind
classify_card(const struct conf *c, const char *reader, const uint8_t *atr,
    size_t len)
{
	const struct rule *r;
	size_t i;
	int k;

	for (k = 0; k < c->n_rules; k++) {
		r = &c->rules[k];
		if (!r->by_atr) {
			if (fnmatch(r->pattern, reader, 0) == 0)
				return r->kind;
			continue;
		}
		if (r->atr_len != len)
			continue;
		for (i = 0; i < len; i++)
			if ((atr[i] & r->mask[i]) != r->atr[i])
				break;
		if (i == len)
			return r->kind;
	}
	return KIND_UNKNOWN;
}
