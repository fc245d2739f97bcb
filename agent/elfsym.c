/* Walks an ELF64 image's symbol table for defined functions: every offset and size is checked against the image, which may be any bytes. */
#include "elfsym.h"

#include <elf.h>
#include <string.h>

/* b[off..off+n) lies inside [0, len). */
static bool inside(size_t len, uint64_t off, uint64_t n)
{
	return off <= len && n <= len - off;
}

static bool section(const struct elfsym_iter *it, const Elf64_Ehdr *eh, size_t i, Elf64_Shdr *out)
{
	uint64_t off = eh->e_shoff + (uint64_t)i * sizeof *out;
	if (i >= eh->e_shnum || !inside(it->len, off, sizeof *out))
		return false;
	memcpy(out, it->img + off, sizeof *out);
	return true;
}

static bool use_table(struct elfsym_iter *it, const Elf64_Ehdr *eh, uint32_t type)
{
	for (size_t i = 0; i < eh->e_shnum; i++) {
		Elf64_Shdr sh, str;
		if (!section(it, eh, i, &sh) || sh.sh_type != type)
			continue;
		if (sh.sh_entsize != sizeof(Elf64_Sym) || !inside(it->len, sh.sh_offset, sh.sh_size) ||
		    !section(it, eh, sh.sh_link, &str) || str.sh_type != SHT_STRTAB ||
		    !inside(it->len, str.sh_offset, str.sh_size))
			return false;
		it->syms = it->img + sh.sh_offset;
		it->count = sh.sh_size / sizeof(Elf64_Sym);
		it->strtab = it->img + str.sh_offset;
		it->strsz = str.sh_size;
		return true;
	}
	return false;
}

bool elfsym_open(struct elfsym_iter *it, const char *img, size_t len)
{
	memset(it, 0, sizeof *it);
	Elf64_Ehdr eh;
	if (len < sizeof eh)
		return false;
	memcpy(&eh, img, sizeof eh);
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return false;
	it->img = img;
	it->len = len;
	it->machine = eh.e_machine;
	if (eh.e_shentsize != sizeof(Elf64_Shdr))
		return true;
	if (use_table(it, &eh, SHT_SYMTAB))
		it->table = ELFSYM_SYMTAB;
	else if (use_table(it, &eh, SHT_DYNSYM))
		it->table = ELFSYM_DYNSYM;
	return true;
}

bool elfsym_section(const struct elfsym_iter *it, const char *name, const char **data, size_t *len)
{
	Elf64_Ehdr eh;
	Elf64_Shdr names, sh;
	if (!it->img || it->len < sizeof eh)
		return false;
	memcpy(&eh, it->img, sizeof eh);
	if (eh.e_shentsize != sizeof(Elf64_Shdr) || !section(it, &eh, eh.e_shstrndx, &names) ||
	    !inside(it->len, names.sh_offset, names.sh_size))
		return false;
	size_t want = strlen(name) + 1;
	for (size_t i = 0; i < eh.e_shnum; i++) {
		if (!section(it, &eh, i, &sh) || sh.sh_name >= names.sh_size || names.sh_size - sh.sh_name < want ||
		    memcmp(it->img + names.sh_offset + sh.sh_name, name, want) != 0)
			continue;
		/* SHT_NOBITS has no bytes in the file; compressed contents are not a line table */
		if (sh.sh_type == SHT_NOBITS || (sh.sh_flags & SHF_COMPRESSED) || !inside(it->len, sh.sh_offset, sh.sh_size))
			return false;
		*data = it->img + sh.sh_offset;
		*len = sh.sh_size;
		return true;
	}
	return false;
}

bool elfsym_next(struct elfsym_iter *it, struct elfsym *out)
{
	while (it->next < it->count) {
		Elf64_Sym s;
		memcpy(&s, it->syms + it->next++ * sizeof s, sizeof s);
		if (ELF64_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF || s.st_value == 0 ||
		    s.st_name >= it->strsz)
			continue;
		const char *name = it->strtab + s.st_name;
		const void *nul = memchr(name, '\0', it->strsz - s.st_name);
		if (!nul || nul == name)
			continue;
		out->name = name;
		out->name_len = (size_t)((const char *)nul - name);
		out->value = s.st_value;
		out->size = s.st_size;
		return true;
	}
	return false;
}
