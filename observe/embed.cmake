# SPDX-License-Identifier: MIT
# Writes OUT, a C header holding the bytes of IN as a NUL-terminated array
# named NAME: the observe page, built into the library so that nothing is
# read from disk or the network at run time.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* SPDX-License-Identifier: MIT */\n/* Generated from ${IN} by observe/embed.cmake. */\nstatic const unsigned char ${NAME}[] = {\n${bytes}0x00};\n")
