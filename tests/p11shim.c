/*
 * A hostile vendor middleware for the tests: a real PKCS#11 module that
 * the daemon loads like any other (p11-kit, C_GetFunctionList), passing
 * every call to the simulated middleware (P11SHIM_MODULE) except where
 * the control file (P11SHIM_CTL) says otherwise.  The file is read at
 * every call, so one daemon meets a new fault for each card:
 *
 *   FUNCTION CKR_HEX     that call returns the CKR instead (0x0 for OK)
 *   status-len N         the license status comes back N bytes long
 *   status HEX           the license status comes back as these bytes
 *
 * FUNCTION is one of C_GetTokenInfo, C_OpenSession, C_GetAttributeValue,
 * C_Login, C_SetAttributeValue; "C_GetAttributeValue@2" means the second
 * status read of a session (the read-back).  Nothing here is ever
 * installed: it exists to prove that every answer a module may give ends
 * in one specific recorded outcome.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST		*shim_real;
static CK_FUNCTION_LIST		 shim_list;
static __thread int		 shim_reads;	/* status reads, per thread */

struct shim_rule {
	char		fn[40];
	unsigned long	ckr;
	long		status_len;	/* -1: as the module says */
	unsigned char	status[64];
	size_t		status_n;
};

static void
shim_rule(struct shim_rule *r)
{
	const char *path = getenv("P11SHIM_CTL");
	char line[300], hex[200];
	FILE *f;
	size_t i;
	unsigned v;

	memset(r, 0, sizeof(*r));
	r->status_len = -1;
	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "status-len %ld", &r->status_len) == 1)
			continue;
		if (sscanf(line, "status %199s", hex) == 1) {
			for (i = 0; i < sizeof(r->status) &&
			    hex[2 * i] != '\0' &&
			    sscanf(hex + 2 * i, "%2x", &v) == 1; i++)
				r->status[i] = (unsigned char)v;
			r->status_n = i;
			continue;
		}
		(void)sscanf(line, "%39s %lx", r->fn, &r->ckr);
	}
	fclose(f);
}

static int
shim_hit(const char *fn, CK_RV *rv)
{
	struct shim_rule r;

	shim_rule(&r);
	if (strcmp(r.fn, fn) != 0)
		return 0;
	*rv = r.ckr;
	return 1;
}

static CK_RV
shim_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR t)
{
	CK_RV rv;

	if (shim_hit("C_GetTokenInfo", &rv))
		return rv;
	return shim_real->C_GetTokenInfo(s, t);
}

static CK_RV
shim_OpenSession(CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n,
    CK_SESSION_HANDLE_PTR h)
{
	CK_RV rv;

	shim_reads = 0;
	if (shim_hit("C_OpenSession", &rv))
		return rv;
	return shim_real->C_OpenSession(s, f, a, n, h);
}

static CK_RV
shim_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p,
    CK_ULONG l)
{
	CK_RV rv;

	if (shim_hit("C_Login", &rv))
		return rv;
	return shim_real->C_Login(h, u, p, l);
}

static CK_RV
shim_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	CK_RV rv;

	if (shim_hit("C_SetAttributeValue", &rv))
		return rv;
	return shim_real->C_SetAttributeValue(h, o, t, n);
}

static CK_RV
shim_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	struct shim_rule r;
	char which[40];
	CK_RV rv;

	shim_reads++;
	snprintf(which, sizeof(which), "C_GetAttributeValue@%d", shim_reads);
	shim_rule(&r);
	if (strcmp(r.fn, which) == 0 || (shim_reads == 1 &&
	    strcmp(r.fn, "C_GetAttributeValue") == 0))
		return r.ckr;
	rv = shim_real->C_GetAttributeValue(h, o, t, n);
	if (rv != CKR_OK || n != 1)
		return rv;
	if (r.status_n > 0) {
		/* A module that honours ulValueLen writes no more than it. */
		memcpy(t[0].pValue, r.status, r.status_n < t[0].ulValueLen ?
		    r.status_n : t[0].ulValueLen);
		t[0].ulValueLen = r.status_n;
	}
	if (r.status_len >= 0) {
		if ((CK_ULONG)r.status_len > t[0].ulValueLen) {
			t[0].ulValueLen = (CK_ULONG)r.status_len;
			return CKR_BUFFER_TOO_SMALL;
		}
		t[0].ulValueLen = (CK_ULONG)r.status_len;
	}
	return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR);

__attribute__((visibility("default"))) CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	CK_C_GetFunctionList get;
	const char *path = getenv("P11SHIM_MODULE");
	void *h;
	CK_RV rv;

	if (shim_real == NULL) {
		if (path == NULL || (h = dlopen(path, RTLD_NOW)) == NULL)
			return CKR_GENERAL_ERROR;
		get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
		if (get == NULL || (rv = get(&shim_real)) != CKR_OK)
			return CKR_GENERAL_ERROR;
		shim_list = *shim_real;
		shim_list.C_GetTokenInfo = shim_GetTokenInfo;
		shim_list.C_OpenSession = shim_OpenSession;
		shim_list.C_Login = shim_Login;
		shim_list.C_SetAttributeValue = shim_SetAttributeValue;
		shim_list.C_GetAttributeValue = shim_GetAttributeValue;
	}
	*out = &shim_list;
	return CKR_OK;
}
