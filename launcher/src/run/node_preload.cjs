// authsome run: send Node's http, https and fetch through the run's proxy (HTTPS_PROXY).
// Loaded with NODE_OPTIONS=--require by `authsome run` (launcher/src/run/node_preload.rs).
// Node 24 and later do this themselves under NODE_USE_ENV_PROXY=1 (also set by run); older
// Node ignores the proxy variables, so this file tunnels through the proxy with CONNECT using
// built-in modules only. It covers requests made with the default agents (http.get/request,
// https.get/request without an `agent` option) and the global fetch. It reads no secret:
// the proxy address and its per-run token come from the environment.
'use strict';
(() => {
  const major = Number(process.versions.node.split('.')[0]);
  const proxyText = process.env.HTTPS_PROXY || process.env.https_proxy;
  if (major >= 24 || !proxyText) return;
  let proxy;
  try {
    proxy = new URL(proxyText);
  } catch {
    return;
  }
  const http = require('http');
  const https = require('https');
  const net = require('net');
  const tls = require('tls');

  const proxyAuth = proxy.username || proxy.password
    ? 'Basic ' + Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')
    : null;
  const noProxy = (process.env.NO_PROXY || process.env.no_proxy || '')
    .split(',').map((e) => e.trim().toLowerCase()).filter(Boolean);

  // NO_PROXY as curl reads it: `*`, a host, or a domain (with or without a leading dot).
  function direct(host, port) {
    host = String(host).toLowerCase().replace(/^\[|\]$/g, '');
    return noProxy.some((entry) => {
      if (entry === '*') return true;
      let name = entry;
      let entryPort;
      const withPort = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) || /^([^:]+):(\d+)$/.exec(entry);
      if (withPort) [, name, entryPort] = withPort;
      if (entryPort && Number(entryPort) !== Number(port)) return false;
      name = name.replace(/^\*?\./, '');
      return host === name || host.endsWith('.' + name);
    });
  }

  // A socket to host:port through the proxy's CONNECT, handed to `done(err, socket)`.
  function tunnel(host, port, done) {
    const socket = net.connect(Number(proxy.port) || 80, proxy.hostname.replace(/^\[|\]$/g, ''));
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      if (err) socket.destroy();
      done(err, value);
    };
    const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    socket.once('connect', () => {
      let head = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n`;
      if (proxyAuth) head += `Proxy-Authorization: ${proxyAuth}\r\n`;
      socket.write(head + '\r\n');
    });
    let buffered = Buffer.alloc(0);
    const onData = (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffered.length > 16384) finish(new Error('the authsome proxy sent an oversized answer'));
        return;
      }
      socket.removeListener('data', onData);
      const status = buffered.subarray(0, buffered.indexOf('\r\n')).toString('latin1');
      if (!/^HTTP\/1\.[01] 200/.test(status)) {
        finish(new Error(`the authsome proxy refused CONNECT ${target}: ${status}`));
        return;
      }
      const rest = buffered.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      finish(null, socket);
    };
    socket.on('data', onData);
    socket.once('error', (err) => finish(err));
    socket.once('close', () => finish(new Error('the authsome proxy closed the connection')));
  }

  class ProxyHttpsAgent extends https.Agent {
    createConnection(options, callback) {
      const host = options.host || options.hostname || 'localhost';
      const port = options.port || 443;
      if (direct(host, port)) return super.createConnection(options, callback);
      tunnel(host, port, (err, raw) => {
        if (err) return callback(err);
        const servername = options.servername || (net.isIP(host) ? undefined : host);
        callback(null, tls.connect({ ...options, host, port, socket: raw, servername }));
      });
      return undefined;
    }
  }

  // Plain http goes to the proxy in absolute form (`GET http://host/path`), as curl sends it:
  // a CONNECT tunnel to a provider host would meet the proxy's TLS interception.
  const proxyHost = proxy.hostname.replace(/^\[|\]$/g, '');
  const proxyPort = Number(proxy.port) || 80;
  const authority = (host, port, defaultPort) => {
    const name = net.isIPv6(host) ? `[${host}]` : host;
    return Number(port) === defaultPort ? name : `${name}:${port}`;
  };

  class ProxyHttpAgent extends http.Agent {
    addRequest(req, options) {
      const host = options.host || options.hostname || 'localhost';
      const port = options.port || 80;
      // A request whose head is already rendered cannot be rewritten: it goes direct.
      if (!direct(host, port) && !req._header) {
        req.path = `http://${authority(host, port, 80)}${req.path}`;
        if (proxyAuth) req.setHeader('Proxy-Authorization', proxyAuth);
        options = { ...options, host: proxyHost, hostname: proxyHost, port: proxyPort };
      }
      return super.addRequest(req, options);
    }
  }

  https.globalAgent = new ProxyHttpsAgent({ keepAlive: true });
  http.globalAgent = new ProxyHttpAgent({ keepAlive: true });

  // fetch: Node's bundled undici keeps its dispatcher under this symbol, created when fetch is
  // first called. Before the first real call, load it with a request that needs no network
  // (a data: URL), then replace the dispatcher with an Agent of the same class that connects
  // through the tunnel.
  const originalFetch = globalThis.fetch;
  if (typeof originalFetch !== 'function') return;
  const dispatcherKey = Symbol.for('undici.globalDispatcher.1');
  let installed = false;
  function install() {
    installed = true;
    originalFetch('data:,').catch(() => {});
    const current = globalThis[dispatcherKey];
    if (!current || typeof current.constructor !== 'function') return;
    const Agent = current.constructor;
    const proxyOrigin = `http://${authority(proxyHost, proxyPort, 80)}`;
    class ProxyDispatcher extends Agent {
      dispatch(opts, handler) {
        const origin = new URL(opts.origin);
        const port = Number(origin.port) || 80;
        if (origin.protocol !== 'http:' || direct(origin.hostname, port)) return super.dispatch(opts, handler);
        const extra = { host: authority(origin.hostname.replace(/^\[|\]$/g, ''), port, 80) };
        if (proxyAuth) extra['proxy-authorization'] = proxyAuth;
        let headers;
        if (Array.isArray(opts.headers)) {
          headers = [...opts.headers];
          for (const [name, value] of Object.entries(extra)) headers.push(name, value);
        } else {
          headers = { ...(opts.headers || {}), ...extra };
        }
        return super.dispatch({ ...opts, origin: proxyOrigin, path: `${origin.origin}${opts.path}`, headers }, handler);
      }
    }
    globalThis[dispatcherKey] = new ProxyDispatcher({
      // https: a TLS connection through a CONNECT tunnel; http reaches here for direct hosts
      // and the proxy itself only.
      connect(opts, done) {
        let called = false;
        const callback = (err, socket) => {
          if (!called) {
            called = true;
            done(err, socket);
          }
        };
        const host = opts.hostname.replace(/^\[|\]$/g, '');
        const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
        const servername = opts.servername || (net.isIP(host) ? undefined : host);
        if (opts.protocol !== 'https:' || direct(host, port)) {
          const socket = opts.protocol === 'https:'
            ? tls.connect({ host, port, servername, ALPNProtocols: ['http/1.1'] })
            : net.connect(port, host);
          const ready = opts.protocol === 'https:' ? 'secureConnect' : 'connect';
          socket.once(ready, () => callback(null, socket)).once('error', (err) => callback(err));
          return;
        }
        tunnel(host, port, (err, raw) => {
          if (err) return callback(err);
          const secure = tls.connect({ socket: raw, servername, ALPNProtocols: ['http/1.1'] });
          secure.once('secureConnect', () => callback(null, secure)).once('error', (err) => callback(err));
        });
      },
    });
  }
  globalThis.fetch = function fetch(input, init) {
    if (!installed) install();
    return originalFetch(input, init);
  };
})();
