/* packlm serve: the parts shared between its files. */
#ifndef PLM_SERVE_H
#define PLM_SERVE_H

#include <stddef.h>

enum { CHAT_QWEN3 = 1, CHAT_CHATML = 2 };

typedef struct {
    const char *role;      /* system, user, assistant, tool */
    const char *content;
    const char *reasoning; /* assistant's reasoning_content, or NULL */
} chat_msg;

/* The renderer for a chat template (CHAT_*), or -1 with the reason in why. */
int chat_template_kind(const char *tpl, char *why, size_t why_len);
/* The prompt text of a conversation plus the generation prompt (malloc'ed), or NULL with why.
 * enable_thinking: -1 not given, 0 false, 1 true. */
char *chat_render(int kind, const chat_msg *msg, int n, int enable_thinking, char *why, size_t why_len);

#endif
