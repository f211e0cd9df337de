// JSON → YAML, in the style of `kubectl get -o yaml`: block mappings,
// sequences under a key at the key's indentation, literal blocks for
// multi-line strings, and quotes only where a plain scalar would be read
// back as something else.
'use strict';
var YAML = (function () {
  var RESERVED = /^(true|false|yes|no|on|off|y|n|null|~)$/i;
  var NUMBER = /^[-+]?(\.\d+|\d[\d_]*(\.\d*)?)([eE][-+]?\d+)?$/;
  var OTHER_NUM = /^([-+]?\.(inf|nan)|0x[0-9a-f]+|0o[0-7]+|[-+]?\d+(:\d+)+)$/i;
  var DATE = /^\d{4}-\d\d?-\d\d?/;

  function plain(s) {
    if (s === '') return false;
    if (/^\s|\s$/.test(s)) return false;
    if (/^[-?:,\[\]{}#&*!|>'"%@`]/.test(s) && !/^-[^\s]/.test(s)) return false;
    if (/^-(\s|$)/.test(s)) return false;
    if (/: |:$| #|[\x00-\x1f\x7f\u2028\u2029\ufeff]/.test(s)) return false;
    if (/[,\[\]{}]/.test(s) && /^[\[{]/.test(s)) return false;
    if (RESERVED.test(s) || NUMBER.test(s) || OTHER_NUM.test(s) || DATE.test(s)) return false;
    if (s.charAt(0) === '-' && (NUMBER.test(s.slice(1)))) return false;
    return true;
  }
  function quote(s) { return plain(s) ? s : JSON.stringify(s); }
  function scalar(v) {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'boolean' || typeof v === 'number') return String(v);
    if (Array.isArray(v)) return '[]';
    if (typeof v === 'object') return '{}';
    return quote(String(v));
  }
  function complex(v) {
    return v !== null && typeof v === 'object' && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
  }
  // a multi-line string as a literal block, or null when it must be quoted
  function literal(s, ind) {
    if (typeof s !== 'string' || s.indexOf('\n') < 0) return null;
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(s) || /^[ \t\n]/.test(s) || / +\n/.test(s)) return null;
    var m = /\n*$/.exec(s)[0].length;
    var head = m === 0 ? '|-' : m === 1 ? '|' : '|+';
    var body = m === 0 ? s : s.slice(0, s.length - (m === 1 ? 1 : 0));
    var lines = body.split('\n').map(function (l) { return l === '' ? '' : ind + l; });
    if (m > 1) lines = lines.slice(0, lines.length - 1);
    return { head: head, lines: lines };
  }
  function block(v, ind, out) {
    if (Array.isArray(v)) {
      v.forEach(function (item) {
        if (complex(item)) {
          var sub = [];
          block(item, ind + '  ', sub);
          sub[0] = ind + '- ' + sub[0].slice(ind.length + 2);
          Array.prototype.push.apply(out, sub);
        } else {
          var lit = literal(item, ind + '  ');
          if (lit) { out.push(ind + '- ' + lit.head); Array.prototype.push.apply(out, lit.lines); }
          else out.push(ind + '- ' + scalar(item));
        }
      });
      return out;
    }
    Object.keys(v).forEach(function (k) {
      var val = v[k], key = quote(k);
      if (complex(val)) {
        out.push(ind + key + ':');
        block(val, Array.isArray(val) ? ind : ind + '  ', out);
      } else {
        var lit = literal(val, ind + '  ');
        if (lit) { out.push(ind + key + ': ' + lit.head); Array.prototype.push.apply(out, lit.lines); }
        else out.push(ind + key + ': ' + scalar(val));
      }
    });
    return out;
  }
  function stringify(v) {
    if (!complex(v)) return scalar(v) + '\n';
    return block(v, '', []).join('\n') + '\n';
  }
  return { stringify: stringify };
})();
