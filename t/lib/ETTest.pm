package ETTest;

# Helpers for mod_eventtrigger's integration tests (see t/README.md):
# the helper processes (t/bin/console.py, t/bin/receiver.py), requests to
# the test sites, the receiver's record of calls, form decoding with PHP,
# the outbox (sqlite3 CLI) and the status page, and httpd restarts.
#
# Nothing here sleeps to let time pass as an assertion: wait_for() polls a
# condition until a deadline.

use strict;
use warnings;

use Exporter 'import';
use Apache::Test ();
use ETProxyEnv ();
use Test::More ();
use JSON::PP ();
use LWP::UserAgent ();
use HTTP::Request ();
use URI::Escape qw(uri_unescape);
use Encode ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes ();
use File::Basename qw(basename);
use File::Spec::Functions qw(catfile);
use File::Temp ();

our @EXPORT_OK = qw(
    t_path define site_url request response_json uniq
    start_console start_receiver stop_proc receiver_log
    calls calls_for_id calls_for_event wait_for wait_calls marker
    seg_decode parse_query canon json_text compact_json
    form_decode form_expect form_normalize
    expected_object check_call
    outbox outbox_file sql_quote status_json
    httpd_stop httpd_start httpd_signal_restart
    curl_h2 curl_send nghttp_streams module_built
    http1_connect http1_request
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $JSON = JSON::PP->new->utf8->allow_nonref;           # bytes <-> data
my $JSON_TEXT = JSON::PP->new->allow_nonref;             # characters <-> data
my $CANON = JSON::PP->new->canonical->allow_nonref;      # for comparisons

sub config { Apache::Test::config() }

# A path under t/ (t_dir), t/logs (t_logs) and so on.
sub t_path {
    my($var, @rest) = @_;
    return catfile(config()->{vars}->{$var}, @rest);
}

# The value of a Define in the generated t/conf/extra.conf.
my %defines;
sub define {
    my $name = shift;
    unless (%defines) {
        my $file = t_path('t_conf', 'extra.conf');
        open my $fh, '<', $file or die "open $file: $!";
        while (<$fh>) {
            $defines{$1} = $2 if /^\s*Define\s+(\S+)\s+(\S+)/;
        }
    }
    defined $defines{$name} or die "no Define $name in t/conf/extra.conf";
    return $defines{$name};
}

sub module_built { -e t_path('t_dir', '..', '.libs', 'mod_eventtrigger.so') }

# http://127.0.0.1:PORT/path of a test site: a <VirtualHost NAME> of
# extra.conf.in, or 'main' for the main server.
sub site_url {
    my($site, $path) = @_;
    my $cfg = config();
    my $port = $site eq 'main' ? $cfg->{vars}->{port}
             : ($cfg->{vhosts}->{$site} || die "no site $site")->{port};
    return "http://127.0.0.1:$port" . ($path // '');
}

my $UA;
sub ua {
    $UA ||= LWP::UserAgent->new(timeout => 30, keep_alive => 0,
                                agent => 'mod_eventtrigger-tests/1.0');
}

# request(SITE, METHOD, PATH, json => DATA | content => BYTES,
#         headers => {...}) -> HTTP::Response
sub request {
    my($site, $method, $path, %a) = @_;
    my @headers = %{ $a{headers} || {} };
    my $content = exists $a{json} ? $JSON->encode($a{json}) : $a{content};
    if (defined $content && !grep { lc eq 'content-type' } keys %{ $a{headers} || {} }) {
        push @headers, 'Content-Type' => 'application/json';
    }
    my $req = HTTP::Request->new($method => site_url($site, $path), \@headers,
                                 $content);
    return ua()->request($req);
}

# The decoded JSON body of a response, undef if it is not JSON.
sub response_json {
    my $res = shift;
    my $data = eval { $JSON->decode($res->content) };
    return $data;
}

# Ids unique across runs (the outbox and the logs outlive a run).
my $RUN = sprintf '%x%x', time, $$;
my $SEQ = 0;
sub uniq { my $tag = shift // 'id'; return join '-', $tag, $RUN, ++$SEQ }

# -- helper processes --------------------------------------------------------

my %PROCS;    # pid -> name

sub python {
    return $ENV{ET_PYTHON} if $ENV{ET_PYTHON};
    for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/bin', '/usr/local/bin') {
        my $p = "$dir/python3";
        return $p if -x $p && !-d _;
    }
    die "python3 not found (set ET_PYTHON)";
}

sub port_open {
    my $port = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

sub spawn {
    my(%a) = @_;
    die "$a{name}: port $a{port} is already in use (a stale helper?)\n"
        if port_open($a{port});
    my $pid = fork // die "fork: $!";
    unless ($pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $a{out} or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        exec @{ $a{argv} } or POSIX::_exit(127);
    }
    $PROCS{$pid} = $a{name};
    my $up = wait_for(sub {
        return 'died' if waitpid($pid, WNOHANG) == $pid;
        return port_open($a{port}) ? 'up' : 0;
    }, 15);
    if (!$up || $up ne 'up') {
        delete $PROCS{$pid} if $up;
        die "$a{name} did not start on port $a{port}: see $a{out}\n";
    }
    return $pid;
}

# The console backend on ET_CONSOLE_PORT; returns its pid.
sub start_console {
    my $port = define('ET_CONSOLE_PORT');
    return spawn(name => 'console', port => $port,
                 out => t_path('t_logs', 'console.log'),
                 argv => [python(), t_path('t_dir', 'bin', 'console.py'),
                          '--port', $port]);
}

sub test_name { my $n = basename($0); $n =~ s/\.t\z//; $n }

# The receiver's log of this test file.
sub receiver_log {
    my $which = shift // '';
    return t_path('t_logs', "receiver-" . test_name() . "$which.jsonl");
}

# start_receiver(port => PORT (ET_RECEIVER_PORT), status => 200, delay => 0,
#                log => FILE (receiver_log()), truncate => 0) -> pid
sub start_receiver {
    my(%a) = @_;
    my $port = $a{port} // define('ET_RECEIVER_PORT');
    my $log = $a{log} // receiver_log();
    if ($a{truncate}) {
        open my $fh, '>', $log or die "truncate $log: $!";
        close $fh;
    }
    return spawn(name => "receiver:$port", port => $port,
                 out => t_path('t_logs', 'receiver.out'),
                 argv => [python(), t_path('t_dir', 'bin', 'receiver.py'),
                          '--port', $port, '--log', $log,
                          '--status', $a{status} // 200,
                          '--delay', $a{delay} // 0]);
}

sub stop_proc {
    my $pid = shift or return;
    return unless delete $PROCS{$pid};
    kill TERM => $pid;
    my $gone = wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 10);
    unless ($gone) {
        kill KILL => $pid;
        waitpid $pid, 0;
    }
}

# Only the test's own process stops its helpers (a forked child, such as
# the one Apache::TestServer::start uses, must not).
my $PARENT = $$;
END {
    local $?;
    if ($$ == $PARENT) {
        stop_proc($_) for keys %PROCS;
    }
}

# -- waiting -----------------------------------------------------------------

# Poll $cond every 50ms until it returns true or $timeout seconds passed;
# returns its last value.
sub wait_for {
    my($cond, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 20);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return $v if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

# -- the receiver's record ---------------------------------------------------

# All calls logged in FILE (default receiver_log()), oldest first.
sub calls {
    my $file = shift // receiver_log();
    open my $fh, '<:raw', $file or return ();
    my @calls;
    while (my $line = <$fh>) {
        last unless $line =~ /\n\z/;          # a line being written
        push @calls, $JSON->decode($line);
    }
    return @calls;
}

# Percent-decode a path segment and read it as UTF-8 (bytes if not UTF-8).
sub seg_decode {
    my $seg = shift;
    my $bytes = uri_unescape($seg);
    my $text = eval { Encode::decode('UTF-8', $bytes, Encode::FB_CROAK()) };
    return defined $text ? $text : $bytes;
}

sub parse_query {
    my $q = shift // '';
    my @pairs;
    for (split /&/, $q) {
        my($k, $v) = split /=/, $_, 2;
        push @pairs, seg_decode($k), seg_decode($v // '');
    }
    return @pairs;
}

# The calls (of FILE) whose last path segment decodes to $id.
sub calls_for_id {
    my($id, $file) = @_;
    return grep {
        my @segs = split m{/}, $_->{path}, -1;
        @segs && seg_decode($segs[-1]) eq $id
    } calls($file);
}

# Wait until at least $n calls for $id arrived; returns them (arrayref).
sub wait_calls {
    my($id, %a) = @_;
    my $n = $a{n} // 1;
    my @found;
    wait_for(sub { @found = calls_for_id($id, $a{log}); @found >= $n },
             $a{timeout} // 20);
    return \@found;
}

# Make an event on $site (default et_json) and wait for its call: when it is
# in, anything made before it had its chance to be sent. True on success.
sub marker {
    my(%a) = @_;
    my $site = $a{site} // 'et_json';
    my $id = uniq('marker');
    my $res = request($site, POST => '/proxy/member',
                      json => { id => $id, username => 'marker' });
    return 0 unless $res->code == 201;
    my $got = wait_calls($id, log => $a{log}, timeout => $a{timeout} // 20);
    return scalar @$got;
}

# -- bodies ------------------------------------------------------------------

sub canon { $CANON->encode($_[0]) }

# Decode JSON text held as characters (as the receiver's record has it).
sub json_text { $JSON_TEXT->decode($_[0]) }

# True if the JSON text has no whitespace outside its strings.
sub compact_json {
    my $t = shift;
    $t =~ s/"(?:[^"\\]|\\.)*"//gs;
    return $t !~ /\s/;
}

# The saved object as the console answered it, with object_type added if
# absent: what a call's body must carry.
sub expected_object {
    my($res_or_data, $object) = @_;
    my $data = ref $res_or_data eq 'HASH' ? { %$res_or_data }
             : response_json($res_or_data);
    return undef unless ref $data eq 'HASH';
    $data->{object_type} = $object unless exists $data->{object_type};
    return $data;
}

# Decode an application/x-www-form-urlencoded body the way PHP does
# (parse_str), as a common bracket-notation decoder.
sub form_decode {
    my $body = shift;
    my $tmp = File::Temp->new;
    binmode $tmp;
    print $tmp Encode::is_utf8($body) ? Encode::encode('UTF-8', $body) : $body;
    close $tmp;
    my $code = '$s = file_get_contents($argv[1]); parse_str($s, $o); '
             . 'echo json_encode($o, JSON_INVALID_UTF8_SUBSTITUTE);';
    open my $php, '-|', 'php', '-d', 'max_input_vars=100000',
        '-d', 'max_input_nesting_level=128', '-r', $code, '--', $tmp->filename
        or die "cannot run php ($!): install php-cli\n";
    local $/;
    my $out = <$php>;
    close $php;
    die "php failed ($?)" if $?;
    return $JSON->decode($out);
}

# PHP gives a list where the keys are 0..n-1 and an object otherwise; make
# both sides of a comparison index-keyed objects.
sub form_normalize {
    my $d = shift;
    if (ref $d eq 'ARRAY') {
        my $i = 0;
        return { map { ($i++ => form_normalize($_)) } @$d };
    }
    if (ref $d eq 'HASH') {
        return { map { ($_ => form_normalize($d->{$_})) } keys %$d };
    }
    return $d;
}

# What a form decoder must give back for JSON data, per the module's
# convention (lib/et_form.h): strings as is, numbers as their JSON text,
# true/false as "true"/"false", null as "", empty objects and arrays left
# out (indices of the others kept).
sub form_expect {
    my $d = shift;
    my $r = ref $d;
    if ($r eq 'HASH' || $r eq 'ARRAY') {
        my %out;
        my @keys = $r eq 'HASH' ? keys %$d : (0 .. $#$d);
        for my $k (@keys) {
            my $v = form_expect($r eq 'HASH' ? $d->{$k} : $d->[$k]);
            next if ref $v eq 'HASH' && !%$v;
            $out{$k} = $v;
        }
        return \%out;
    }
    return '' unless defined $d;
    return $d ? 'true' : 'false' if JSON::PP::is_bool($d);
    return "$d";
}

# The calls (of FILE) for $id whose query says event=$event.
sub calls_for_event {
    my($id, $event, $file) = @_;
    return grep {
        my %q = parse_query($_->{query});
        ($q{event} // '') eq $event
    } calls_for_id($id, $file);
}

# check_call($call or [$calls...], name => ..., method => 'PUT',
#            root => '/hooks/json', object => 'member', id => $id,
#            event => 'post-create', format => 'json'|'form',
#            body => $expected_data)
# One subtest (so one test in the plan) checking a call in full; given an
# array of calls, also that there is exactly one.
sub check_call {
    my($call, %e) = @_;
    my $name = $e{name} // "$e{event} $e{object} '$e{id}'";
    my $method = $e{method} // ($e{event} eq 'post-delete' ? 'DELETE' : 'PUT');
    my $ctype = ($e{format} // 'json') eq 'form'
        ? 'application/x-www-form-urlencoded' : 'application/json';
    my $all;
    if (ref $call eq 'ARRAY') {
        $all = $call;
        $call = $all->[0];
    }
    return Test::More::subtest($name => sub {
        unless ($call) {
            Test::More::plan(tests => 1);
            Test::More::fail('the call arrived');
            return;
        }
        Test::More::plan(tests => 12 + ($all ? 1 : 0));
        if ($all) {
            Test::More::is(scalar @$all, 1, 'exactly one call')
                or Test::More::diag(join "\n", map {
                    "$_->{method} $_->{path}?$_->{query} at $_->{time}" } @$all);
        }
        Test::More::is($call->{method}, $method, 'method');

        my $prefix = "$e{root}/v1/$e{object}/";
        my $path = $call->{path};
        my $has_prefix = substr($path, 0, length $prefix) eq $prefix;
        Test::More::ok($has_prefix, "path starts with $prefix")
            or Test::More::diag("path: $path");
        my $seg = $has_prefix ? substr($path, length $prefix)
                              : (split m{/}, $path)[-1] // '';
        Test::More::ok(length $seg && $seg !~ m{[/?# ]}
                       && $seg !~ /%(?![0-9A-Fa-f]{2})/ && $seg !~ /[^\x21-\x7e]/,
                       'the id is one percent-encoded path segment')
            or Test::More::diag("segment: $seg");
        Test::More::is(seg_decode($seg), $e{id}, 'the segment decodes to the id');

        my @q = parse_query($call->{query});
        my %q = @q;
        my @keys = @q[grep { !($_ % 2) } 0 .. $#q];
        Test::More::is(join(',', sort @keys), 'event,txn',
                       'query: event and txn, once each')
            or Test::More::diag("query: $call->{query}");
        Test::More::is($q{event}, $e{event}, 'event');
        Test::More::like($q{txn} // '', qr/\A[0-9a-f]{32}\z/, 'txn: 32 lowercase hex');

        my $h = $call->{headers};
        Test::More::is($h->{accept}, 'application/json', 'Accept');
        Test::More::is($h->{'user-agent'}, 'Mashery Event Trigger 1.0', 'User-Agent');
        Test::More::is($h->{'content-type'}, $ctype, 'Content-Type');

        if (($e{format} // 'json') eq 'form') {
            my $got = eval { form_decode($call->{body}) };
            Test::More::ok(defined $got, 'PHP decodes the form body')
                or Test::More::diag("body: $call->{body}\n$@");
            Test::More::is_deeply(form_normalize($got), form_expect($e{body}),
                                  'the decoded form equals the object')
                or Test::More::diag("body: $call->{body}");
        }
        else {
            my $got = eval { json_text($call->{body}) };
            # the console's own text, object_type appended when missing
            Test::More::ok(defined $got && ref $got eq 'HASH'
                           && ($e{body}{object_type} // '') eq ($got->{object_type} // '')
                           && $call->{body} =~ /\}\z/,
                           'the body is the console\'s JSON object')
                or Test::More::diag("body: $call->{body}");
            Test::More::is(canon($got), canon($e{body}),
                           'the body is the saved object with object_type');
        }
    });
}

# -- the outbox and the status page ------------------------------------------

sub outbox_file { t_path('t_state', 'eventtrigger.db') }

sub sql_quote { my $s = shift; $s =~ s/'/''/g; "'$s'" }

# Rows of a SELECT on the outbox (sqlite3 CLI), as hashrefs.
sub outbox {
    my $sql = shift;
    open my $fh, '-|', 'sqlite3', '-json', '-cmd', '.timeout 5000',
        outbox_file(), $sql or die "cannot run sqlite3 ($!): install sqlite3\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "sqlite3 failed on: $sql\n" if $?;
    return [] unless defined $out && $out =~ /\S/;
    return $JSON->decode($out);
}

# The status page's JSON ({"pending":N,"delivered":N,"dead":N,"failed":N,...}).
sub status_json {
    my $res = request('main', GET => '/et-status?json');
    return undef unless $res->is_success;
    return response_json($res);
}

# -- httpd -------------------------------------------------------------------

sub quietly {
    my $code = shift;
    open my $saved, '>&', \*STDOUT or die "dup: $!";
    open STDOUT, '>&', \*STDERR or die "dup: $!";
    my @r = eval { $code->() };
    my $err = $@;
    open STDOUT, '>&', $saved or die "dup: $!";
    die $err if $err;
    return wantarray ? @r : $r[0];
}

# Stop and start httpd the way t/TEST does (Apache::TestServer).
sub httpd_stop {
    my $server = config()->server;
    return quietly(sub { $server->stop });
}

sub httpd_start {
    my $server = config()->server;
    return quietly(sub { $server->start });
}

sub count_in_error_log {
    my $re = shift;
    open my $fh, '<', t_path('t_logs', 'error_log') or return 0;
    my $n = 0;
    while (<$fh>) { $n++ if /$re/ }
    return $n;
}

# Restart httpd with a signal (HUP: restart, USR1: graceful) and wait until
# the new generation runs.
sub httpd_signal_restart {
    my $sig = shift // 'HUP';
    my $server = config()->server;
    my $pid = $server->pid or return 0;
    my $re = qr/resuming normal operations/;
    my $before = count_in_error_log($re);
    kill $sig => $pid or return 0;
    return wait_for(sub { count_in_error_log($re) > $before }, 30)
        && wait_for(sub { $server->ping }, 30);
}

# curl_h2(SITE, METHOD, PATH, [DATA]): one request over HTTP/2 cleartext
# with prior knowledge. Returns (status, http_version, body).
# (curl 7.88 cannot reuse an h2c connection, curl bug #10634: several
# streams on one connection are sent with nghttp_streams instead.)
sub curl_h2 {
    my($site, $method, $path, $data) = @_;
    my $out = File::Temp->new;
    my @argv = ('curl', '-sS', '--http2-prior-knowledge', '-o', $out->filename,
                '-w', '%{http_code} %{http_version}', '-X', $method,
                site_url($site, $path));
    push @argv, '-H', 'Content-Type: application/json',
        '--data-binary', $JSON->encode($data) if defined $data;
    open my $fh, '-|', @argv or die "cannot run curl ($!): install curl\n";
    my $w = do { local $/; <$fh> } // '';
    close $fh;
    my $body = do { local $/; open my $b, '<:raw', $out->filename; <$b> } // '';
    return (split(/ /, $w), $body);
}

# curl_send(site => SITE, path => PATH, body => BYTES, method => 'POST',
#           chunked => 0, h2 => 0, headers => [LINES]): one request with a
# JSON body sent as is (Transfer-Encoding: chunked, HTTP/2 with prior
# knowledge: what LWP cannot do). Returns { code, version, headers
# (lowercased names), body }.
sub curl_send {
    my(%a) = @_;
    my $in = File::Temp->new;
    binmode $in;
    print $in $a{body};
    close $in;
    my $out = File::Temp->new;
    my $hdr = File::Temp->new;
    my @argv = ('curl', '-sS', '-o', $out->filename, '-D', $hdr->filename,
                '-w', '%{http_code} %{http_version}', '-X', $a{method} // 'POST',
                '-H', 'Content-Type: application/json',
                '--data-binary', '@' . $in->filename);
    push @argv, '--http2-prior-knowledge' if $a{h2};
    push @argv, '-H', 'Transfer-Encoding: chunked' if $a{chunked};
    push @argv, map { ('-H', $_) } @{ $a{headers} || [] };
    push @argv, site_url($a{site}, $a{path});
    open my $fh, '-|', @argv or die "cannot run curl ($!): install curl\n";
    my $w = do { local $/; <$fh> } // '';
    close $fh;
    my %h;
    open my $hf, '<', $hdr->filename or die "curl's headers: $!";
    while (<$hf>) { $h{lc $1} = $2 if /^([^:\s]+):\s*(.*?)\s*$/ }
    my $body = do { local $/; open my $b, '<:raw', $out->filename; <$b> } // '';
    my($code, $ver) = split / /, $w;
    return { code => $code, version => $ver, headers => \%h, body => $body };
}

# nghttp_streams(SITE, METHOD, DATA, PATH...): the requests as concurrent
# streams of ONE HTTP/2 connection (nghttp, prior knowledge), each with the
# JSON body DATA. Returns { path => status }.
sub nghttp_streams {
    my($site, $method, $data, @paths) = @_;
    my $tmp = File::Temp->new;
    binmode $tmp;
    print $tmp $JSON->encode($data);
    close $tmp;
    open my $fh, '-|', 'nghttp', '-n', '-s', '-H', ":method: $method",
        '-H', 'content-type: application/json', '-d', $tmp->filename,
        map({ site_url($site, $_) } @paths)
        or die "cannot run nghttp ($!): install nghttp2-client\n";
    my %status;
    while (<$fh>) {
        # id  responseEnd requestStart  process code size request path
        $status{$2} = $1 if /^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+\d+\s+(\S+)\s*$/;
    }
    close $fh;
    return \%status;
}


# -- one HTTP/1.1 connection, several requests (keep-alive) -------------------

# A connection to SITE for http1_request().
sub http1_connect {
    my $site = shift;
    my($port) = site_url($site) =~ /:(\d+)$/;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => 10)
        or die "connect to $site: $!";
    return $sock;
}

# Send one request on $sock and read its whole answer (Content-Length,
# chunked, or none for 204/304/HEAD). Returns { status, headers, body },
# headers with lowercased names; undef if the connection was closed.
sub http1_request {
    my($sock, $method, $path, %a) = @_;
    my $body = exists $a{json} ? $JSON->encode($a{json}) : $a{content};
    my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    my %h = %{ $a{headers} || {} };
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    if (defined $body) {
        $req .= "Content-Type: application/json\r\n" unless grep { lc eq 'content-type' } keys %h;
        $req .= "Content-Length: " . length($body) . "\r\n";
    }
    $req .= "\r\n" . ($body // '');
    print {$sock} $req or return undef;

    local $/ = "\r\n";
    my $line = <$sock>;
    return undef unless defined $line;
    my($status) = $line =~ m{^HTTP/1\.\d (\d{3})} or return undef;
    my %rh;
    while (defined($line = <$sock>)) {
        last if $line eq "\r\n";
        $line =~ s/\r\n\z//;
        my($k, $v) = split /:\s*/, $line, 2;
        $rh{lc $k} = $v;
    }
    my $rbody = '';
    if ($method eq 'HEAD' || $status == 204 || $status == 304) {
        # no body
    }
    elsif (($rh{'transfer-encoding'} // '') =~ /chunked/i) {
        while (defined(my $size = <$sock>)) {
            $size =~ s/[;\r\n].*//s;
            $size = hex $size;
            if ($size == 0) {
                while (defined($line = <$sock>)) { last if $line eq "\r\n" }
                last;
            }
            my $chunk = '';
            while (length $chunk < $size) {
                my $n = read($sock, $chunk, $size - length $chunk, length $chunk);
                return undef unless $n;
            }
            $rbody .= $chunk;
            <$sock>;                                  # CRLF after the chunk
        }
    }
    elsif (defined $rh{'content-length'}) {
        my $want = $rh{'content-length'};
        while (length $rbody < $want) {
            my $n = read($sock, $rbody, $want - length $rbody, length $rbody);
            return undef unless $n;
        }
    }
    return { status => $status, headers => \%rh, body => $rbody };
}

1;
