/*
 * The ATR rules: a [classify] section from the input, parsed by conf.c,
 * then classify_card on an ATR and a reader name from the input.  The
 * result is checked against the rules as cardlicd.conf(5) states them,
 * matched here apart from conf.c: the first rule that matches decides;
 * an ATR rule matches an ATR of its length whose bits under the mask are
 * the rule's; a reader rule matches by fnmatch(3) pattern; no rule: the
 * card is probed (KIND_UNKNOWN).  And bits outside the deciding rule's
 * mask cannot change what it decided.
 *
 * Input: [classify] lines, NUL, the reader name, NUL, the ATR bytes.
 */
#include "../../daemon/conf.c"
#include "stubs.h"

#include <fnmatch.h>

static const char fa_head[] = "[pkcs11]\nmodule = /fuzz/p11.so\n"
	"pin = 1234\n[classify]\n";

/* The first rule that matches, by the manual; -1 for none. */
static int
fa_first(const struct conf *c, const char *reader, const uint8_t *atr,
    size_t len)
{
	const struct rule *r;
	size_t i;
	int k, ok;

	for (k = 0; k < c->n_rules; k++) {
		r = &c->rules[k];
		if (!r->by_atr) {
			if (fnmatch(r->pattern, reader, 0) == 0)
				return k;
			continue;
		}
		ok = r->atr_len == len;
		for (i = 0; ok && i < len; i++)
			ok = ((atr[i] ^ r->atr[i]) & r->mask[i]) == 0;
		if (ok)
			return k;
	}
	return -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_parse p;
	struct conf *c;
	const uint8_t *nul, *atr;
	char *text, reader[READER_MAX];
	uint8_t flipped[64];
	size_t tlen, rlen, alen, i;
	enum card_kind kind, again;
	int first;

	if ((nul = memchr(data, '\0', size)) == NULL)
		return 0;
	tlen = (size_t)(nul - data);
	if (tlen > CONF_FILE_MAX - sizeof(fa_head))
		return 0;
	atr = nul + 1;
	alen = size - tlen - 1;
	nul = memchr(atr, '\0', alen);
	rlen = nul != NULL ? (size_t)(nul - atr) : 0;
	if (rlen >= sizeof(reader))
		rlen = sizeof(reader) - 1;
	memcpy(reader, atr, rlen);
	reader[rlen] = '\0';
	if (nul != NULL) {
		alen -= (size_t)(nul - atr) + 1;
		atr = nul + 1;
	}
	if (alen > sizeof(flipped))
		alen = sizeof(flipped);

	memset(&p, 0, sizeof(p));
	p.section = -1;
	p.c = c = conf_new();
	FUZZ_CHECK(c != NULL, "conf_new");
	text = malloc(sizeof(fa_head) + tlen);
	memcpy(text, fa_head, sizeof(fa_head) - 1);
	memcpy(text + sizeof(fa_head) - 1, data, tlen);
	text[sizeof(fa_head) - 1 + tlen] = '\0';
	conf_parse_text(&p, text, sizeof(fa_head) - 1 + tlen);
	free(text);
	if (p.err_line != 0) {
		conf_unref(c);
		return 0;
	}
	kind = classify_card(c, reader, atr, alen);
	first = fa_first(c, reader, atr, alen);
	FUZZ_CHECK(first < 0 ? kind == KIND_UNKNOWN : kind ==
	    c->rules[first].kind, "kind %d, rule %d of %d says %d", kind,
	    first, c->n_rules, first < 0 ? KIND_UNKNOWN :
	    (int)c->rules[first].kind);
	if (first >= 0 && c->rules[first].by_atr) {
		/* Flip every bit the deciding rule does not look at. */
		for (i = 0; i < alen; i++)
			flipped[i] = atr[i] ^ (uint8_t)~c->rules[first].mask[i];
		again = classify_card(c, reader, flipped, alen);
		FUZZ_CHECK(fa_first(c, reader, flipped, alen) <= first &&
		    (fa_first(c, reader, flipped, alen) < first ||
		    again == kind), "bits outside the mask of rule %d "
		    "changed %d to %d", first, kind, again);
	}
	(void)classify_reader_wanted(c, reader);
	conf_unref(c);
	return 0;
}
