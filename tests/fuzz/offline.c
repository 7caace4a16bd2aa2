/*
 * offline.c: name lookups never leave the process in fuzz targets and their
 * replays.
 *
 * endpoint.c resolves a host name once, at load time, through getaddrinfo.
 * A fuzzer makes up thousands of names a second; sending each to the
 * machine's resolver would make a run slow, dependent on the network, and
 * a nuisance to the DNS server.  Linking this file into a target replaces
 * getaddrinfo (the executable's definition wins over libc's, and over the
 * sanitizers' weak interceptors) with one that forces AI_NUMERICHOST: a
 * numeric address is parsed by libc's real code, a name fails at once with
 * EAI_NONAME, the same answer every time.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <string.h>

typedef int getaddrinfo_fn(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static getaddrinfo_fn *real;
	struct addrinfo numeric;

	if (real == NULL && (real = (getaddrinfo_fn *)dlsym(RTLD_NEXT, "getaddrinfo")) == NULL)
		return EAI_FAIL;
	if (hints != NULL)
		numeric = *hints;
	else
		memset(&numeric, 0, sizeof(numeric));
	numeric.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &numeric, res);
}
