# The HTML status page in a real browser: headless Chromium (Debian's
# chromium package) loads it without console messages (errors, failed
# loads), takes a screenshot that is a real picture (a PNG of the window's
# size, not of one colour), and its DOM has the site table with every site
# of ?json. Skipped when chromium is not installed.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use Compress::Zlib ();
use File::Temp ();
use POSIX qw(WNOHANG);

my $chromium = find_chromium();     # $ET_CHROMIUM names another binary
plan tests => 14,
    need({ 'chromium is not installed (Debian: apt-get install chromium)' => $chromium });

my($W, $H) = (1200, 800);

# run_chromium(ARGS...) -> (exit status, stdout, stderr); killed after 90 s.
sub run_chromium {
    my @args = @_;
    my $tmp = File::Temp->newdir;
    my $out = "$tmp/out";
    my $err = "$tmp/err";
    my $pid = fork // die "fork: $!";
    unless ($pid) {
        $ENV{HOME} = "$tmp";
        $ENV{XDG_CONFIG_HOME} = "$tmp/config";
        $ENV{XDG_CACHE_HOME} = "$tmp/cache";
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        exec $chromium, '--headless', '--no-sandbox', '--disable-gpu',
            '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--no-first-run', '--no-default-browser-check',
            "--user-data-dir=$tmp/profile", '--enable-logging=stderr', '--v=0',
            @args or POSIX::_exit(127);
    }
    my $done = wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 90);
    unless ($done) {
        kill KILL => $pid;
        waitpid $pid, 0;
    }
    my $rc = $done ? $? >> 8 : -1;
    my $slurp = sub { open my $fh, '<', $_[0] or return ''; local $/; <$fh> // '' };
    return ($rc, $slurp->($out), $slurp->($err));
}

# Messages of the page's console (errors, failed loads, script errors):
# Chromium logs each as "...:CONSOLE(:line)] "text", source: URL".
sub console_lines { grep { /:CONSOLE[:(]/ } split /\n/, shift }

# Decode a PNG (8-bit RGB or RGBA, not interlaced): (width, height,
# number of colours, share of pixels unlike the top-left one), or an error.
sub png_stats {
    my $data = shift;
    return 'not a PNG' unless substr($data, 0, 8) eq "\x89PNG\r\n\x1a\n";
    my($pos, $idat, %ihdr) = (8, '');
    while ($pos + 8 <= length $data) {
        my($len, $type) = unpack 'N a4', substr($data, $pos, 8);
        my $body = substr($data, $pos + 8, $len);
        if ($type eq 'IHDR') {
            @ihdr{qw(w h depth ctype comp filter interlace)} = unpack 'N N C C C C C', $body;
        }
        elsif ($type eq 'IDAT') { $idat .= $body }
        elsif ($type eq 'IEND') { last }
        $pos += 12 + $len;
    }
    return 'no IHDR' unless %ihdr;
    return "unsupported PNG (depth $ihdr{depth}, colour type $ihdr{ctype}, "
         . "interlace $ihdr{interlace})"
        unless $ihdr{depth} == 8 && ($ihdr{ctype} == 2 || $ihdr{ctype} == 6)
               && !$ihdr{interlace};
    my $raw = Compress::Zlib::uncompress($idat);
    return 'the image data does not inflate' unless defined $raw;
    my $bpp = $ihdr{ctype} == 6 ? 4 : 3;
    my $stride = $ihdr{w} * $bpp;
    return 'short image data' unless length $raw == $ihdr{h} * ($stride + 1);
    my(@prev, %colours, $bg, $unlike, $n);
    @prev = (0) x $stride;
    for my $y (0 .. $ihdr{h} - 1) {
        my $off = $y * ($stride + 1);
        my $ft = ord substr($raw, $off, 1);
        my @cur = unpack 'C*', substr($raw, $off + 1, $stride);
        for my $i (0 .. $#cur) {
            my $a = $i >= $bpp ? $cur[$i - $bpp] : 0;
            my $b = $prev[$i];
            my $c = $i >= $bpp ? $prev[$i - $bpp] : 0;
            my $add = $ft == 0 ? 0 : $ft == 1 ? $a : $ft == 2 ? $b
                    : $ft == 3 ? ($a + $b) >> 1
                    : do {
                        my $p = $a + $b - $c;
                        my($pa, $pb, $pc) = (abs($p - $a), abs($p - $b), abs($p - $c));
                        $pa <= $pb && $pa <= $pc ? $a : $pb <= $pc ? $b : $c;
                    };
            $cur[$i] = ($cur[$i] + $add) & 0xff;
        }
        if ($y % 2 == 0) {                     # every other row is plenty
            for (my $i = 0; $i < $stride; $i += $bpp * 2) {
                my $px = join ',', @cur[$i .. $i + 2];
                $bg //= $px;
                $colours{$px}++;
                $n++;
                $unlike++ if $px ne $bg;
            }
        }
        @prev = @cur;
    }
    return ($ihdr{w}, $ihdr{h}, scalar(keys %colours), ($unlike // 0) / ($n || 1));
}

my $url = site_url('ops_counts', '/et-status');
my $sum = status_json();
ok($sum && @{ $sum->{sites} || [] }, 'the status page lists sites (?json)');
my @names = map { $_->{site} } @{ $sum->{sites} || [] };

# The check itself: a page with a script error and a console.error must
# show up as console messages (else the assertions below prove nothing).
{
    my(undef, undef, $err) = run_chromium('--dump-dom',
        'data:text/html,<p>control</p><script>console.error("et-control-error");'
        . 'no_such_function();</script>');
    my @c = console_lines($err);
    ok((grep { /et-control-error/ } @c) && (grep { /no_such_function/ } @c),
       'control: Chromium reports a page\'s console errors on stderr')
        or diag($err);
}

# --dump-dom: the DOM after loading
my($rc, $dom, $err) = run_chromium('--dump-dom', $url);
is($rc, 0, 'chromium --dump-dom exits 0') or diag($err);
is_deeply([console_lines($err)], [], 'no console messages while loading the page');
like($dom, qr{<title>Event Trigger status</title>}, 'the DOM has the page\'s title');
my $tables = html_tables($dom);
my($site_table) = grep { @{ $_->{head} } && $_->{head}[0] eq 'site' } @$tables;
ok($site_table, 'the DOM has the site table');
is_deeply([sort map { $_->[0] } @{ $site_table ? $site_table->{rows} : [] }],
          [sort @names], 'with one row per site, named as in ?json')
    or diag(explain $site_table);
ok((grep { $_ eq 'ops-esc<"\\&>' } map { $_->[0] } @{ $site_table ? $site_table->{rows} : [] }),
   'a name with < " \\ & > shows as text (escaped, not markup)');

# --screenshot
my $dir = File::Temp->newdir;
my $png = "$dir/status.png";
($rc, undef, $err) = run_chromium("--screenshot=$png", "--window-size=$W,$H",
                                  '--hide-scrollbars', $url);
is($rc, 0, 'chromium --screenshot exits 0') or diag($err);
is_deeply([console_lines($err)], [], 'no console messages while rendering');
ok(-s $png && -s $png > 10_000, 'the screenshot is a file of more than 10 KB')
    or diag('size: ' . (-s $png // 'none'));
my $data = do { local $/; open my $fh, '<:raw', $png; $fh ? <$fh> : '' } // '';
my @st = png_stats($data);
is_deeply([@st[0, 1]], [$W, $H], "a PNG of ${W}x$H") or diag("@st");
cmp_ok($st[2] // 0, '>=', 3, 'of several colours (text, borders, background)');
ok(defined $st[3] && $st[3] > 0.005 && $st[3] < 0.6,
   'with between 0.5% and 60% of the pixels unlike the background')
    or diag(sprintf 'share: %s', $st[3] // 'n/a');
