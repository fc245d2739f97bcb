/* fn-unpatch: functions the agent must refuse to patch (too short; a jump back into its first bytes), written in assembly so the compiler cannot change them. */
#include <stdio.h>

int tiny(void);
int loopy(int n);

__asm__(".text\n"
	".globl tiny\n.type tiny,@function\n"
	"tiny:\n\txor %eax, %eax\n\tret\n"
	".size tiny, .-tiny\n"
	".globl loopy\n.type loopy,@function\n"
	/* the loop starts 2 bytes in: inside the 5 bytes a jump would replace */
	"loopy:\n\txor %eax, %eax\n"
	"1:\n\tinc %eax\n\tcmp %edi, %eax\n\tjl 1b\n\tret\n"
	".size loopy, .-loopy\n");

int main(void)
{
	printf("tiny %d loopy %d\n", tiny(), loopy(9));
	return 0;
}
