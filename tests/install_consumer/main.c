/* Links against an installed cgloo and sends a message to itself. */
#include <cgloo/cgloo.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    cgloo_context *ctx;
    char buf[8] = {0};
    if (cgloo_context_create(0, 1, NULL, &ctx) || cgloo_context_connect(ctx, NULL, NULL) ||
        cgloo_send(ctx, "hi", 3, 0, 1, 1000) || cgloo_recv(ctx, buf, sizeof buf, 0, 1, 1000, NULL))
        return 1;
    cgloo_context_destroy(ctx);
    printf("cgloo %s: %s\n", cgloo_version_string(), buf);
    return strcmp(buf, "hi") != 0 || cgloo_version() != CGLOO_VERSION;
}
