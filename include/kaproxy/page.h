/*
 * page: the admin endpoint's live page (GET /), src/page.html as written,
 * embedded in the binary when CMake configures the build (page.c there).
 */
#ifndef KAPROXY_PAGE_H
#define KAPROXY_PAGE_H

#include <stddef.h>

/* The page's bytes (NUL-terminated) and its length without the NUL. */
extern const char page_html[];
extern const size_t page_html_len;

#endif
