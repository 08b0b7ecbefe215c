#!/usr/bin/env bash
# packlm serve end to end: two real servers on loopback ports (any free port, read back from their
# log), driven by the official openai npm client (tests/node/serve_test.mjs) and curl. Bounded: every
# client call has a timeout, the whole node run too, and the servers are killed at the end.
# Needs node + tests/node/node_modules (scripts/setup-and-test.sh runs npm ci there).
set -u
cd "$(dirname "$0")/.."
P=${PACKLM:-build/packlm}
T=build/tmp/serve
mkdir -p "$T"
fails=0
check() { # check <description> <command...>
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
if ! command -v node > /dev/null || ! command -v curl > /dev/null; then
    echo "FAIL serve: node and curl are needed (scripts/deps.sh installs them)"
    exit 1
fi
if [ ! -d tests/node/node_modules/openai ] || [ ! -d tests/node/node_modules/@huggingface/jinja ]; then
    (cd tests/node && timeout 300 npm ci --no-audit --no-fund > /dev/null 2>&1)
fi
if [ ! -d tests/node/node_modules/openai ]; then
    echo "FAIL serve: tests/node/node_modules is missing (cd tests/node && npm ci)"
    exit 1
fi

"$P" serve --help > "$T/help.txt" 2>&1
check "serve --help exits 0 and documents the options" grep -q -- "--max-queue" "$T/help.txt"
"$P" serve > /dev/null 2>&1
check "serve without --model: exit 2" test $? -eq 2

[ -f "$T/text-model/model.safetensors" ] || timeout 120 node tests/node/make_text_model.mjs "$T/text-model"
[ -f "$T/tool-model/model.safetensors" ] || timeout 120 node tests/node/make_tool_model.mjs "$T/tool-model" > /dev/null
# the text model with a template in Qwen3.5's style (XML tool calls, macros), and with one packlm refuses
for d in xml-model refused-model; do
    mkdir -p "$T/$d"
    for f in model.safetensors config.json tokenizer.json; do ln -sf "../text-model/$f" "$T/$d/$f"; done
done
cp tests/data/chat-templates/xml-tools.jinja "$T/xml-model/chat_template.jinja"
cp tests/data/chat-templates/refused.jinja "$T/refused-model/chat_template.jinja"
"$P" serve --model "$T/refused-model" --port 0 > /dev/null 2> "$T/refused.log"
rc=$?
check "a template outside the subset: serve refuses to start (exit 1) and names what it cannot render" \
    test $rc -eq 1 -a -n "$(grep "cannot render: filter 'wordwrap' is not supported" "$T/refused.log")"
KEY=test-key-123
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; wait 2> /dev/null; }
trap cleanup EXIT
start() { # start <log> <args...>: echoes the URL
    local log=$1
    shift
    "$P" serve --port 0 --threads 1 "$@" 2> "$log" &
    local pid=$!
    pids+=($pid)
    for _ in $(seq 600); do # until it listens or exits (a minute at most)
        grep -q "listening on" "$log" && break
        kill -0 $pid 2> /dev/null || break
        sleep 0.1
    done
}
start "$T/ids.log" --model tests/data/tiny-dense --max-seqs 16 --max-batch-tokens 64
start "$T/text.log" --model "$T/text-model" --api-key "$KEY" --max-seqs 8
# IPv6 where the machine has it (a loopback ::1), else these two listen on IPv4 and the IPv6 checks say so
H6=::1 HA=::
start "$T/tool.log" --model "$T/tool-model" --host $H6
if grep -q "cannot listen" "$T/tool.log"; then
    H6=127.0.0.1 HA=0.0.0.0
    start "$T/tool.log" --model "$T/tool-model" --host $H6
fi
start "$T/xml.log" --model "$T/xml-model" --host $HA
U1=$(grep -o 'http://[0-9.]*:[0-9]*' "$T/ids.log" | head -1)
U2=$(grep -o 'http://[0-9.]*:[0-9]*' "$T/text.log" | head -1)
U3=$(grep -o 'http://[][0-9.:]*:[0-9]*' "$T/tool.log" | head -1)
U4=$(grep -o 'http://[][0-9.:]*:[0-9]*' "$T/xml.log" | head -1)
check "the servers listen (two on IPv4, one on ::1, one on ::)" test -n "$U1" -a -n "$U2" -a -n "$U3" -a -n "$U4"
if [ -z "$U1" ] || [ -z "$U2" ] || [ -z "$U3" ] || [ -z "$U4" ]; then cat "$T/ids.log" "$T/text.log" "$T/tool.log" "$T/xml.log"; exit 1; fi
P4=${U4##*:}
if [ $H6 = ::1 ]; then
    U4="http://[::1]:$P4"
    check "IPv6: the server on --host ::1 listens on [::1] and curl reaches it" \
        test "$(echo "$U3" | grep -c '^http://\[::1\]:')" = 1 -a "$(curl -s -m 30 -g "$U3/health")" = '{"status":"ok"}'
    check "IPv6: the server on --host :: answers on [::1] and on 127.0.0.1 (dual stack)" \
        test "$(curl -s -m 30 -g "$U4/health")" = '{"status":"ok"}' -a "$(curl -s -m 30 "http://127.0.0.1:$P4/health")" = '{"status":"ok"}'
else
    U4="http://127.0.0.1:$P4"
    echo "skip IPv6: serve --host ::1 cannot listen on this machine (no IPv6 loopback)"
fi

# curl: health, streaming (SSE ending in [DONE]), errors
C="curl -s -m 30"
check "curl GET /health" test "$($C "$U1/health")" = '{"status":"ok"}'
$C "$U1/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": [262, 386, 486, 17, 73], "max_tokens": 4, "temperature": 0, "stream": true}' > "$T/sse.txt"
check "curl streaming: events, then data: [DONE]" test "$(grep -c '^data: {' "$T/sse.txt")" -ge 1 -a "$(grep -v '^$' "$T/sse.txt" | tail -1)" = "data: [DONE]"
want=$(echo "262 386 486 17 73" > "$T/p.txt"; "$P" generate --model tests/data/tiny-dense --input "$T/p.txt" --max-new-tokens 4 2> /dev/null | tr ' ' ',')
got=$(grep -o '"token_ids":\[[0-9,]*\]' "$T/sse.txt" | grep -o '[0-9][0-9,]*' | paste -sd, -)
check "curl streaming: the events' token_ids equal packlm generate" test "$got" = "$want"
code=$($C -o "$T/e.json" -w '%{http_code}' "$U1/v1/completions" -d '{"prompt": [1], "max_tokens": -1}')
check "curl: bad max_tokens answers 400 with an error object" test "$code" = 400 -a -n "$(grep -o '"error":{"message"' "$T/e.json")"
head -c 9000000 /dev/zero | tr '\0' ' ' > "$T/big.json"
code=$($C -o /dev/null -w '%{http_code}' "$U1/v1/completions" --data-binary @"$T/big.json")
check "curl: a 9 MB body answers 413" test "$code" = 413
# the body must be strict JSON: invalid UTF-8 (which the error answer would echo), data after a NUL
# byte, and \u0000 (cJSON would cut the string there) are refused; answers stay valid JSON
printf '{"model": "o\377\376x", "prompt": [1]}' > "$T/bad-utf8.json"
code=$($C -o "$T/e.json" -w '%{http_code}' "$U1/v1/completions" --data-binary @"$T/bad-utf8.json")
check "curl: invalid UTF-8 in the body answers 400 invalid_json, naming line and column" test "$code" = 400 -a \
    "$(grep -o '"message":"[^"]*"' "$T/e.json")" = '"message":"the request body is not valid JSON: invalid UTF-8 in a string at line 1, column 13"'
printf '{"prompt": [1], "max_tokens": 1}\000{"prompt": "x"' > "$T/nul.json"
code=$($C -o "$T/e.json" -w '%{http_code}' "$U1/v1/completions" --data-binary @"$T/nul.json")
check "curl: a body with data after a NUL byte answers 400 invalid_json" test "$code" = 400 -a -n "$(grep -o '"code":"invalid_json"' "$T/e.json")"
code=$($C -o "$T/e.json" -w '%{http_code}' "$U1/v1/completions" -d '{"prompt": "ab\u0000cd"}')
check "curl: \\u0000 in a string answers 400 (not a prompt cut at the NUL)" test "$code" = 400 -a \
    "$(grep -o '"message":"[^"]*"' "$T/e.json")" = '"message":"the request body holds \\u0000 (NUL) in a string at line 1, column 15: not supported"'
code=$($C -o "$T/e.json" -w '%{http_code}' "$U1/%FF%FEnowhere")
check "curl: a 404 quoting a path of invalid UTF-8 is valid JSON (U+FFFD)" test "$code" = 404 -a \
    "$(grep -o '"message":"[^"]*"' "$T/e.json")" = "$(printf '"message":"no such path: GET /\357\277\275\357\277\275nowhere"')"
code=$($C -o /dev/null -w '%{http_code}' "$U1/nowhere")
check "curl: unknown path answers 404" test "$code" = 404
code=$($C -o /dev/null -w '%{http_code}' "$U2/v1/models")
check "curl: no API key answers 401" test "$code" = 401
code=$($C -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$U2/v1/models")
check "curl: the API key is accepted" test "$code" = 200

URL_IDS=$U1 URL_TEXT=$U2 URL_TOOL=$U3 URL_XML=$U4 KEY=$KEY PACKLM=$P MODEL_IDS=tests/data/tiny-dense MODEL_TEXT="$T/text-model" XML_TEMPLATE=tests/data/chat-templates/xml-tools.jinja TMP="$T" \
    timeout 300 node tests/node/serve_test.mjs
rc=$?
check "openai client checks (tests/node/serve_test.mjs)" test $rc -eq 0
check "the servers are still up" test "$($C "$U1/health")" = '{"status":"ok"}' -a "$($C "$U2/health")" = '{"status":"ok"}' \
    -a "$($C -g "$U3/health")" = '{"status":"ok"}' -a "$($C -g "$U4/health")" = '{"status":"ok"}'
cleanup
trap - EXIT
rm -rf "$T/big.json"
echo "serve: $fails failed"
[ "$fails" -eq 0 ]
