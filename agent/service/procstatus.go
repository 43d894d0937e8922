package service

import (
	"bytes"
	"fmt"
	"strconv"
)

// maxGroups bounds the supplementary groups read for one peer (the
// kernel's NGROUPS_MAX is 65536).
const maxGroups = 65536

// parseStatusGroups extracts the supplementary group ids from the contents
// of /proc/PID/status (proc(5): a line "Groups:" followed by
// whitespace-separated decimal gids, possibly none).
func parseStatusGroups(status []byte) ([]uint32, error) {
	for off := 0; off < len(status); {
		line := status[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		lineOff := off
		off += len(line) + 1
		rest, ok := bytes.CutPrefix(line, []byte("Groups:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) > maxGroups {
			return nil, fmt.Errorf("proc status/groups: %d groups at offset %d, limit %d", len(fields), lineOff, maxGroups)
		}
		groups := make([]uint32, 0, len(fields))
		for _, f := range fields {
			g, err := strconv.ParseUint(string(f), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("proc status/groups: gid %q at offset %d: %w", f, lineOff, err)
			}
			groups = append(groups, uint32(g))
		}
		return groups, nil
	}
	return nil, fmt.Errorf("proc status/groups: no Groups line")
}
