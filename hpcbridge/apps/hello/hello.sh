#!/bin/bash
# Parameters arrive as environment variables (param_<name>) and in job.json.
for i in $(seq 1 "$param_lines"); do
  echo "[$i/$param_lines] Hello, $param_name!"
  sleep "$param_delay"
done
echo "Hello, $param_name!" > "$HPCBRIDGE_RESULT_DIR/greeting.txt"
if [ -d "$HPCBRIDGE_DATA_DIR" ]; then
  ls -R "$HPCBRIDGE_DATA_DIR" > "$HPCBRIDGE_RESULT_DIR/data_listing.txt"
fi
echo "done" >&2
